#!/usr/bin/env bash
# DNS over TLS end to end: ztdns-control + ztdns-dataplane on loopback with a
# fresh CA, queried by BIND's dig and Knot's kdig with client certificates,
# unbound as the local upstream. Private names answer only to allowed CNs, with
# the proxy's address; everyone else gets what a nonexistent name gets.
. "$(dirname "$0")/lib.sh"

start_upstream || { not_ok "local unbound upstream starts"; exit 1; }
setup_appliance || { not_ok "appliance set up"; cat "$T/control.log"; exit 1; }
start_dataplane || { not_ok "ztdns-dataplane starts"; cat "$T/dataplane.log"; exit 1; }
ok "ztdns-dataplane starts and reports its DoT port"
check_output "a second data plane refuses a port that is already served (no silent SO_REUSEPORT sharing)" \
    "127.0.0.1:$DOT_PORT: the port is in use" timeout 10 "$ZTDATAPLANE" --data-dir "$D" --shards 1 --dot-listen "127.0.0.1:$DOT_PORT" --proxy-listen 127.0.0.1:0

# ---- private names ----------------------------------------------------------
check_output "authorized CN gets the proxy address" '^db\.internal\.corp\.[[:space:]]+60[[:space:]]+IN[[:space:]]+A[[:space:]]+203\.0\.113\.50' \
    dot "$ALICE" db.internal.corp A
dot "$ALICE" db.internal.corp A > "$T/alice.out" 2>&1
check "the service's real address never appears (in an answer that has the proxy's)" \
    bash -c "grep -q 203.0.113.50 '$T/alice.out' && ! grep -q 198.19.10.50 '$T/alice.out'"
check_output "the answer is authoritative" 'flags: qr aa' dot "$ALICE" db.internal.corp A
check_output "AAAA of a name with only A records is NODATA with the zone's SOA" 'status: NOERROR.*|SOA' dot "$ALICE" db.internal.corp AAAA
check_output "a name under the zone without records is NXDOMAIN" 'status: NXDOMAIN' dot "$ALICE" nothere.db.internal.corp A
check_output "names are case-insensitive" '203\.0\.113\.50' dot "$ALICE" DB.Internal.CORP A
check "the log has the seed's line" wait_for 3 grep -q "DNS: $ALICE queried db.internal.corp → 203.0.113.50" "$T/dataplane.log"
# OpenSSL clients (dig, curl, python) offer an X25519 key share first: taken as offered, no HelloRetryRequest.
hello() { local b=$D/bundles/$ALICE; timeout 5 openssl s_client -connect "127.0.0.1:$DOT_PORT" -cert "$b/cert.pem" -key "$b/key.pem" -CAfile "$b/ca.crt" -servername edge1.test -msg < /dev/null 2>&1; }
hello > "$T/hello.out"
check "an OpenSSL client's handshake takes one ClientHello (no HelloRetryRequest round trip)" \
    test "$(grep -c 'Handshake .*, ClientHello' "$T/hello.out")" -eq 1
check "and X25519 for the key exchange" grep -q "Server Temp Key: X25519" "$T/hello.out"
check_output "kdig (Knot) with a client certificate gets the same answer" '203\.0\.113\.50' \
    kdig @127.0.0.1 -p "$DOT_PORT" +tls +tls-ca="$D/bundles/$ALICE/ca.crt" +tls-hostname=edge1.test \
    +tls-certfile="$D/bundles/$ALICE/cert.pem" +tls-keyfile="$D/bundles/$ALICE/key.pem" +time=3 +retry=0 db.internal.corp A

# ---- no existence leak --------------------------------------------------------
shape() { dot "$@" | grep -E 'status:|flags:|ANSWER SECTION|AUTHORITY SECTION' | sed -E 's/id: [0-9]+//'; }
check_output "unauthorized CN gets NXDOMAIN" 'status: NXDOMAIN' dot "$BOB" db.internal.corp A
check "unauthorized answer has exactly the shape of a nonexistent name's" \
    test "$(shape "$BOB" db.internal.corp A)" = "$(shape "$BOB" doesnotexist.internal.corp A)"
check "the denial is logged" wait_for 3 grep -q "DNS: $BOB denied db.internal.corp (not allowed)" "$T/dataplane.log"

# ---- the endpoint's catalog: standard DNS, never an address ------------------------------
check_output "the catalog lists the zones a CN may see (PTR)" 'PTR[[:space:]]+db\.internal\.corp\.' dot "$ALICE" _catalog._ztdns.edge1.test PTR
dot "$BOB" _catalog._ztdns.edge1.test PTR > "$T/bob-catalog.out" 2>&1
check "the catalog lists nothing for a CN that may see nothing (an answer, without PTR records)" \
    bash -c "grep -q 'status:' '$T/bob-catalog.out' && ! grep -q 'PTR.*internal' '$T/bob-catalog.out'"
check_output "SRV gives the service's port" 'SRV[[:space:]]+0 0 5432 db\.internal\.corp\.' dot "$ALICE" _ztdns._tcp.db.internal.corp SRV
check "SRV for a zone the CN may not see looks like a nonexistent name" \
    test "$(shape "$BOB" _ztdns._tcp.db.internal.corp SRV)" = "$(shape "$BOB" _ztdns._tcp.doesnotexist.internal.corp SRV)"

# ---- public names through the upstream -------------------------------------------
check_output "public name answered by the local upstream" '198\.18\.0\.10' dot "$ALICE" www.public.test A
check_output "a second time from the cache" '198\.18\.0\.10' dot "$ALICE" www.public.test A
padded_size() { dot "$ALICE" +padding=128 "$1" A | sed -n 's/.*MSG SIZE  rcvd: \([0-9]*\).*/\1/p'; }
check "a forwarded answer is padded to a multiple of 468 when the query was padded (RFC 8467)" \
    bash -c "n=\$($(declare -f dot padded_size); D='$D' DOT_PORT=$DOT_PORT ALICE=$ALICE padded_size other.public.test); test \$((n % 468)) -eq 0 -a \$n -gt 0"
check "so is the same answer from the cache" \
    bash -c "n=\$($(declare -f dot padded_size); D='$D' DOT_PORT=$DOT_PORT ALICE=$ALICE padded_size other.public.test); test \$((n % 468)) -eq 0 -a \$n -gt 0"
check_output "an answer too large for UDP is fetched again over TCP" 'ffffffffff"$' dot "$ALICE" +bufsize=512 big.public.test TXT

# ---- pipelining and malformed input -----------------------------------------------------
check_output "1,000 pipelined private queries on one connection, matched by ID" "answered 1000 of 1000" \
    python3 "$HERE/dot_client.py" 127.0.0.1 "$DOT_PORT" "$D/bundles/$ALICE" edge1.test pipeline 1000 db.internal.corp
check_output "1,000 pipelined public queries on one connection, matched by ID" "answered 1000 of 1000" \
    python3 "$HERE/dot_client.py" 127.0.0.1 "$DOT_PORT" "$D/bundles/$ALICE" edge1.test pipeline 1000 other.public.test
check_output "40 identical pipelined queries for an answer that is not cached (TTL 0): all answered, none lost" "answered 40 of 40" \
    python3 "$HERE/dot_client.py" 127.0.0.1 "$DOT_PORT" "$D/bundles/$ALICE" edge1.test pipeline 40 zero.public.test
check_output "malformed messages get FORMERR or a close, and the server keeps serving" "still serving after the malformed messages: True" \
    python3 "$HERE/dot_client.py" 127.0.0.1 "$DOT_PORT" "$D/bundles/$ALICE" edge1.test garbage

# ---- counters, shared with control -----------------------------------------------------
# sum NAME: a counter summed over the data plane's shards, from `ztdns metrics`.
sum() { "$ZTDNS" --data-dir "$D" metrics | awk -v n="$1{pid=\"$dataplane_pid\"" 'index($0, n) == 1 { s += $2 } END { print s + 0 }'; }
check_output "ztdns metrics shows every shard's counters (Prometheus text)" "^ztdns_queries_total\\{pid=\"$dataplane_pid\",shard=\"1\"\\} [0-9]+$" \
    "$ZTDNS" --data-dir "$D" metrics
check "the counters count what happened: 2,000 pipelined queries, 1,000 of them private, cache hits" \
    test "$(sum ztdns_queries_total)" -ge 2000 -a "$(sum ztdns_queries_private_total)" -ge 1000 -a "$(sum ztdns_cache_hits_total)" -gt 0
check "malformed queries are counted, and answered FORMERR" test "$(sum ztdns_queries_malformed_total)" -gt 0 -a "$(sum ztdns_rcode_formerr_total)" -gt 0
check "the histogram of forwarded answers' latency counts them" \
    test "$(sum ztdns_forwarded_answer_latency_seconds_count)" -gt 0
check_output "ztdns status shows the data plane's totals" "pid $dataplane_pid: .*connections open, [0-9]+ tunnels open, [0-9]+ queries" \
    "$ZTDNS" --data-dir "$D" status

# ---- refusals ---------------------------------------------------------------------
refused() { ! grep -q 'ANSWER SECTION' "$T/last.out" && ! grep -q 'status:' "$T/last.out"; }
dig @127.0.0.1 -p "$DOT_PORT" +tls +tls-ca="$D/ca/ca.crt" +tls-hostname=edge1.test +time=3 +tries=1 db.internal.corp > "$T/last.out" 2>&1
if refused; then ok "no client certificate: refused"; else not_ok "no client certificate: refused"; cat "$T/last.out"; fi

# A CA of someone else's, and a certificate with alice's CN from it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil-ca.key" -out "$T/evil-ca.crt" \
    -subj "/CN=ZeroTrust CA" -days 30 2> /dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil.key" -out "$T/evil.csr" -subj "/CN=$ALICE" 2> /dev/null
openssl x509 -req -in "$T/evil.csr" -CA "$T/evil-ca.crt" -CAkey "$T/evil-ca.key" -CAcreateserial -out "$T/evil.crt" -days 30 2> /dev/null
dig @127.0.0.1 -p "$DOT_PORT" +tls +tls-ca="$D/ca/ca.crt" +tls-hostname=edge1.test +tls-certfile="$T/evil.crt" \
    +tls-keyfile="$T/evil.key" +time=3 +tries=1 db.internal.corp > "$T/last.out" 2>&1
if refused; then ok "a certificate from another CA (with an allowed CN): refused"; else not_ok "a certificate from another CA: refused"; cat "$T/last.out"; fi

# Certificates signed by our CA with openssl: one current (the control case), one expired.
cat > "$T/ca.cnf" <<CNF
[ca]
default_ca = d
[d]
database = $T/index.txt
new_certs_dir = $T
serial = $T/serial
default_md = sha256
policy = p
unique_subject = no
x509_extensions = leaf
[p]
commonName = supplied
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
CNF
: > "$T/index.txt"; echo 1000 > "$T/serial"
sign() { # name startdate enddate
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/$1.key" -out "$T/$1.csr" -subj "/CN=$ALICE" 2> /dev/null
    openssl ca -batch -config "$T/ca.cnf" -cert "$D/ca/ca.crt" -keyfile "$D/ca/ca.key" -in "$T/$1.csr" -out "$T/$1.crt" \
        -startdate "$2" -enddate "$3" -notext > /dev/null 2>&1
}
sign current 20250101000000Z 20350101000000Z
sign expired 20200101000000Z 20200201000000Z
check "openssl made both test certificates" test -s "$T/current.crt" -a -s "$T/expired.crt"
for which in current expired; do
    dig @127.0.0.1 -p "$DOT_PORT" +tls +tls-ca="$D/ca/ca.crt" +tls-hostname=edge1.test +tls-certfile="$T/$which.crt" \
        +tls-keyfile="$T/$which.key" +time=3 +tries=1 db.internal.corp > "$T/$which.out" 2>&1
done
check_output "control case: the same kind of certificate, current, is accepted" '203\.0\.113\.50' cat "$T/current.out"
cp "$T/expired.out" "$T/last.out"
if refused; then ok "an expired certificate: refused"; else not_ok "an expired certificate: refused"; cat "$T/last.out"; fi
check "the expiry is the reason logged" grep -q "handshake failed: .*[Dd]ate" "$T/dataplane.log"

# Revocation takes effect at once, also for a connection that is open.
check_output "carol resolves before revocation" '203\.0\.113\.50' dot "$CAROL" db.internal.corp A
python3 "$HERE/dot_client.py" 127.0.0.1 "$DOT_PORT" "$D/bundles/$CAROL" edge1.test hold 10 > "$T/hold.log" 2>&1 &
_pids+=($!)
wait_for 5 grep -q connected "$T/hold.log"
"$ZTDNS" --data-dir "$D" revoke "$CAROL" > /dev/null
wait_for 3 grep -q "closed by the server" "$T/hold.log"
check_output "an open connection of a revoked CN is closed within a second" "closed by the server after 0\\." cat "$T/hold.log"
dot "$CAROL" db.internal.corp A > "$T/last.out" 2>&1
if refused; then ok "a revoked CN is refused right after ztdns revoke, nothing restarted"; else not_ok "a revoked CN is refused"; cat "$T/last.out"; fi
check "the refusal is logged with the CN and the reason" grep -q "DNS: refused $CAROL: revoked" "$T/dataplane.log"
# told_why BUNDLE: what OpenSSL (s_client, reading until the server closes) says when the data plane refuses it.
told_why() { # BUNDLE [more s_client options]
    local who=$1; shift
    timeout 5 openssl s_client -connect "127.0.0.1:$DOT_PORT" -servername edge1.test -verify_return_error \
        -CAfile "$D/ca/ca.crt" -cert "$D/bundles/$who/cert.pem" -key "$D/bundles/$who/key.pem" -ign_eof "$@" < /dev/null 2>&1
}
check_output "the open connection was told why: a certificate_revoked alert (Python's ssl)" "CERTIFICATE_REVOKED" cat "$T/hold.log"
check_output "a new connection is told why too: a certificate_revoked alert (openssl s_client)" "alert certificate revoked" told_why "$CAROL"

# ---- nested zones: one the CN may not see inside one it may ------------------------------
add_service Intranet 8080 internal.corp > /dev/null && "$ZTDNS" --data-dir "$D" authorize "$BOB" internal.corp > /dev/null
check "bob may see the parent zone internal.corp (its SOA comes with a nonexistent name's NXDOMAIN)" \
    wait_for 3 bash -c "$(declare -f dot); D='$D' DOT_PORT=$DOT_PORT dot '$BOB' doesnotexist.internal.corp A | grep -E '^internal\.corp\.[[:space:]].*SOA'"
check "db.internal.corp, which bob may not see, has exactly the shape of a nonexistent name in internal.corp" \
    test "$(shape "$BOB" db.internal.corp A)" = "$(shape "$BOB" doesnotexist.internal.corp A)"
check_output "and the same authority: internal.corp's SOA, not the upstream's" '^internal\.corp\.[[:space:]].*SOA' dot "$BOB" db.internal.corp A

# ---- table updates and control going away ------------------------------------------
check_output "bob resolves after ztdns authorize, without reconnecting anything" '203\.0\.113\.50' \
    bash -c "'$ZTDNS' --data-dir '$D' authorize '$BOB' db.internal.corp > /dev/null && sleep 0.3 && $(declare -f dot); D='$D' DOT_PORT=$DOT_PORT dot '$BOB' db.internal.corp A"
kill "$control_pid"; wait "$control_pid" 2> /dev/null
check_output "control stopped: the data plane keeps serving its last table" '203\.0\.113\.50' dot "$ALICE" db.internal.corp A

# ---- upstream down -> SERVFAIL within the timeout ----------------------------------------
kill "$unbound_pid"; wait "$unbound_pid" 2> /dev/null
start_ms=$(date +%s%3N)
check_output "upstream down: SERVFAIL" 'status: SERVFAIL' dot "$ALICE" nocache.public.test A
elapsed=$(($(date +%s%3N) - start_ms))
check_output "upstream down: 40 identical pipelined queries all get SERVFAIL, matched by ID" "answered 40 of 40" \
    python3 "$HERE/dot_client.py" 127.0.0.1 "$DOT_PORT" "$D/bundles/$ALICE" edge1.test pipeline 40 down.public.test 2
check "SERVFAIL came within the 700 ms timeout plus one tick (took ${elapsed} ms, dig included)" test "$elapsed" -lt 1500

# ---- restart from the table file alone ----------------------------------------------------
kill "$dataplane_pid"; wait "$dataplane_pid" 2> /dev/null; rc=$?
check "SIGTERM stops the data plane cleanly, exit status 0 (was $rc)" \
    bash -c "test $rc -eq 0 && grep -q 'DNS: stopped after' '$T/dataplane.log'"
mv "$T/dataplane.log" "$T/dataplane-1.log"
start_dataplane || not_ok "restart without control"
check_output "a data plane started without control serves the table file" '203\.0\.113\.50' dot "$ALICE" db.internal.corp A

# ---- --no-control: a new table file is adopted on SIGHUP -------------------------------------
kill "$dataplane_pid"; wait "$dataplane_pid" 2> /dev/null
cat "$T/dataplane.log" >> "$T/dataplane-old.log"
start_dataplane --no-control || not_ok "data plane starts with --no-control"
start control "$ZTCONTROL" --data-dir "$D"
wait_for 10 test -S "$D/control.sock"
check_output "bob resolves (authorized above)" '203\.0\.113\.50' dot "$BOB" db.internal.corp A
table_sum=$(sha256sum < "$D/route.table")
adopted=$(grep -c "Table: adopted generation" "$T/dataplane.log")
"$ZTDNS" --data-dir "$D" revoke "$BOB" > /dev/null
check "control rewrote the table file" wait_for 5 bash -c "test \"\$(sha256sum < '$D/route.table')\" != '$table_sum'"
check_output "without SIGHUP the data plane keeps the table it has" '203\.0\.113\.50' dot "$BOB" db.internal.corp A
kill -HUP "$dataplane_pid"
check "after SIGHUP it adopts the newer table file" \
    wait_for 3 bash -c "test \$(grep -c 'Table: adopted generation' '$T/dataplane.log') -gt $adopted"
dot "$BOB" db.internal.corp A > "$T/last.out" 2>&1
if refused; then ok "and bob, revoked in it, is refused"; else not_ok "and bob, revoked in it, is refused"; cat "$T/last.out"; fi
kill "$control_pid"; wait "$control_pid" 2> /dev/null

# ---- limits that hold under abuse ------------------------------------------------------
# restart_with JQ_FILTER: the data plane again, on one shard, with ztdns.json's limits changed.
restart_with() {
    kill "$dataplane_pid"; wait "$dataplane_pid" 2> /dev/null
    cat "$T/dataplane.log" >> "$T/dataplane-old.log"
    jq "$1" "$D/ztdns.json" > "$T/z.json" && mv "$T/z.json" "$D/ztdns.json"
    start_dataplane --shards 1 || not_ok "restart with $1"
}
client() { python3 "$HERE/dot_client.py" 127.0.0.1 "$DOT_PORT" "$D/bundles/$ALICE" edge1.test "$@"; }
# refused_now: a new connection of alice's gets no answer (it is closed instead).
refused_now() {
    client hold 1 > "$T/extra.log" 2>&1
    ! grep -q '^connected' "$T/extra.log" && grep -qiE 'error|closed' "$T/extra.log"
}
# hold_open N: N connections of alice's, each held (with one answer) for 8 s.
hold_open() {
    for k in $(seq "$1"); do
        client hold 8 > "$T/held$k.log" 2>&1 &
        _pids+=($!)
        wait_for 5 grep -q connected "$T/held$k.log"
    done
}
restart_with '.limits.idle_timeout_ms = 1000'
check_output "a connection that never starts its handshake is closed after the handshake timeout (2 s)" "closed after 2\." \
    python3 -c "
import socket, time
s = socket.create_connection(('127.0.0.1', $DOT_PORT))
s.settimeout(10)
t = time.time()
try:
    s.recv(1)
except OSError:
    pass
print('closed after %.2f s' % (time.time() - t))"
check_output "an idle connection is closed after the idle timeout (1 s)" "closed by the server after 1\." client hold 5
check_output "a client that sends and never reads its answers is closed too" "closed by the server after" client noread 8 db.internal.corp
check "and the reason is logged" grep -q "connection closed for $ALICE (the client does not read its answers" "$T/dataplane.log"

restart_with '.limits.idle_timeout_ms = 30000 | .limits.max_connections_per_cn = 2'
hold_open 2
check "a third connection of a CN allowed two is refused" refused_now
check "the refusal is logged with the CN and the limit" grep -q "DNS: refused $ALICE: over 2 connections" "$T/dataplane.log"
check_output "and told why: an access_denied alert (openssl s_client)" "alert access denied" told_why "$ALICE"

restart_with '.limits.max_connections_per_cn = 100 | .tls_min_version = "1.2"'
# TLS 1.2: the handshake's last step writes the server's Finished; the alert must follow it, not be lost behind it.
check_output "with TLS 1.2 allowed, a TLS 1.2 client of a revoked CN is told why too" "alert certificate revoked" \
    told_why "$CAROL" -tls1_2
check_output "and a TLS 1.2 client in good standing is answered (Python's ssl, at most TLS 1.2)" "answered 10 of 10" \
    env ZT_TLS12=1 python3 "$HERE/dot_client.py" 127.0.0.1 "$DOT_PORT" "$D/bundles/$ALICE" edge1.test pipeline 10 db.internal.corp

restart_with '.tls_min_version = "1.3" | .limits.max_queries_per_connection = 5'
check_output "at most 5 queries per connection, then the server closes it" "answered 5, then closed by the server" \
    client count 10 db.internal.corp

restart_with '.limits.max_queries_per_connection = 65535 | .limits.max_connections_per_shard = 3'
hold_open 3
check "a fourth connection to a shard of 3 connection slots is refused" refused_now
check "the refusal is logged with the limit" grep -q "DNS: refused a connection: all 3 connection slots of shard 0 are in use" "$T/dataplane.log"
