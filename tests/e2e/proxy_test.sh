#!/usr/bin/env bash
# The TLS proxy end to end: ztdns-control + ztdns-dataplane on loopback with a
# fresh CA in front of real services (an HTTP server, PostgreSQL, Redis, sshd,
# and socat as an echo and counting service), reached with curl, openssl
# s_client, psql, redis-cli and ssh presenting client certificates.
. "$(dirname "$0")/lib.sh"

setup_appliance || { not_ok "appliance set up"; cat "$T/control.log"; exit 1; }
chmod 755 "$T"

# ---- the hidden services ----------------------------------------------------------
WEB_PORT=$(free_port)
mkdir -p "$T/www" && echo "hello from the hidden web service" > "$T/www/index.html"
start web python3 -m http.server "$WEB_PORT" --bind 127.0.0.1 --directory "$T/www"
ECHO_PORT=$(free_port)
start echo python3 "$HERE/echo_server.py" "$ECHO_PORT"
COUNT_PORT=$(free_port)
start count socat "TCP-LISTEN:$COUNT_PORT,bind=127.0.0.1,reuseaddr,fork" "SYSTEM:wc -c"
REDIS_PORT=$(free_port)
start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
PG_PORT=$(free_port)
PGBIN=/usr/lib/postgresql/15/bin
mkdir -p "$T/pg" && chown postgres "$T/pg"
if runuser -u postgres -- "$PGBIN/initdb" -D "$T/pg/data" -U admin --auth=trust > "$T/initdb.log" 2>&1; then
    start postgres runuser -u postgres -- "$PGBIN/postgres" -D "$T/pg/data" -p "$PG_PORT" -k "$T/pg" -c listen_addresses=127.0.0.1
else
    cat "$T/initdb.log"
fi
SSH_PORT=$(free_port)
ssh-keygen -q -t ed25519 -N "" -f "$T/ssh_host_key"
ssh-keygen -q -t ed25519 -N "" -f "$T/user_key"
cat "$T/user_key.pub" > "$T/authorized_keys"
chmod 600 "$T/authorized_keys"
mkdir -p /run/sshd
start sshd /usr/sbin/sshd -D -e -p "$SSH_PORT" -o ListenAddress=127.0.0.1 -h "$T/ssh_host_key" \
    -o AuthorizedKeysFile="$T/authorized_keys" -o PasswordAuthentication=no -o StrictModes=no -o PidFile=none

WEB=$(add_service Web "$WEB_PORT" web.internal.corp)
ECHO=$(add_service Echo "$ECHO_PORT" echo.internal.corp)
COUNT=$(add_service Count "$COUNT_PORT" count.internal.corp)
REDIS=$(add_service Redis "$REDIS_PORT" cache.internal.corp)
PG=$(add_service PostgreSQL "$PG_PORT" pg.internal.corp)
SSH=$(add_service SSH "$SSH_PORT" ssh.internal.corp)
for d in web echo count cache pg ssh; do "$ZTDNS" --data-dir "$D" authorize "$ALICE" "$d.internal.corp" > /dev/null; done
"$ZTDNS" --data-dir "$D" authorize "$CAROL" echo.internal.corp > /dev/null

start_dataplane || { not_ok "ztdns-dataplane starts"; cat "$T/dataplane.log"; exit 1; }
PROXY_PORT=$(proxy_port)
check "ztdns-dataplane reports its proxy port" test -n "$PROXY_PORT"
wait_for 10 bash -c "ss -ltn | grep -q ':$PG_PORT '" || not_ok "PostgreSQL starts"

A=$D/bundles/$ALICE
if grep -q "kernel TLS off" "$T/dataplane.log"; then
    timeout 10 "$ZTDATAPLANE" --data-dir "$D" --shards 1 --ktls on --dot-listen 127.0.0.1:0 --proxy-listen 127.0.0.1:0 > "$T/ktls-on.out" 2>&1
    echo "exit status $?" >> "$T/ktls-on.out"
    check "--ktls on where the kernel has no kernel TLS: refuses to start, and says why" \
        bash -c "grep -q -- '--ktls on, but this kernel has no kernel TLS' '$T/ktls-on.out' && grep -q 'exit status [1-9]' '$T/ktls-on.out'"
else
    skip "--ktls on without kernel TLS refuses to start: this kernel has kTLS (the VM tier runs --ktls on)"
fi
# The first plaintext bytes must name the destination within 5 s when the SNI names the proxy itself (timed in the background).
python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" edge1.test silent 9 > "$T/sniff.out" 2>&1 &
sniff_client=$!
ccurl() { local b=$D/bundles/$1; shift; curl -sS --max-time 10 --cacert "$b/ca.crt" --cert "$b/cert.pem" --key "$b/key.pem" "$@"; }

# ---- HTTP: by SNI, and by Host when SNI names the proxy or is absent ------------------------
check_output "curl reaches the hidden web service by SNI" "hello from the hidden web service" \
    ccurl "$ALICE" --resolve "web.internal.corp:$PROXY_PORT:127.0.0.1" "https://web.internal.corp:$PROXY_PORT/"
check_output "curl verifies the proxy's certificate for the private name" "hello from the hidden web service" \
    ccurl "$ALICE" --resolve "web.internal.corp:$PROXY_PORT:127.0.0.1" "https://web.internal.corp:$PROXY_PORT/index.html"
check_output "routing by Host when the SNI names the proxy itself" "hello from the hidden web service" \
    ccurl "$ALICE" --resolve "edge1.test:$PROXY_PORT:127.0.0.1" -H "Host: web.internal.corp" "https://edge1.test:$PROXY_PORT/"
check_output "routing by Host without SNI (openssl s_client -noservername)" "hello from the hidden web service" \
    bash -c "printf 'GET / HTTP/1.1\r\nHost: web.internal.corp\r\nConnection: close\r\n\r\n' | timeout 10 openssl s_client -quiet -noservername \
        -cert $A/cert.pem -key $A/key.pem -CAfile $A/ca.crt -connect 127.0.0.1:$PROXY_PORT 2>/dev/null"
check "the audit log has the seed's lines" grep -q "Proxy: $ALICE → $WEB (127.0.0.1:$WEB_PORT)" "$T/dataplane.log"
check "the audit log says when the service connected" grep -q "Proxy: Connected to service 127.0.0.1:$WEB_PORT" "$T/dataplane.log"
check "the audit log has the close line with bytes and path" \
    wait_for 3 grep -Eq "Proxy: Connection closed for $ALICE \([0-9]+s active, [0-9]+ bytes up, [0-9]+ bytes down, user-space TLS" "$T/dataplane.log"

# ---- other protocols, unchanged -------------------------------------------------------------------
PGW=$(free_port); tls_wrap "$PGW" "$ALICE" pg.internal.corp
check_output "psql runs a query on a real PostgreSQL through the proxy" "^ *42 *$" \
    psql "host=127.0.0.1 port=$PGW user=admin dbname=postgres connect_timeout=10" -tAc "select 42"
RW=$(free_port); tls_wrap "$RW" "$ALICE" cache.internal.corp
check_output "redis-cli SET through the proxy" "OK" redis-cli -h 127.0.0.1 -p "$RW" SET ztdns works
check_output "redis-cli GET through the proxy" "works" redis-cli -h 127.0.0.1 -p "$RW" GET ztdns
check_output "ssh to a real sshd through the proxy (ProxyCommand openssl s_client)" "hello over ssh" \
    timeout 30 ssh -i "$T/user_key" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
        -o "ProxyCommand=openssl s_client -quiet -nocommands -servername ssh.internal.corp -cert $A/cert.pem -key $A/key.pem -CAfile $A/ca.crt -connect 127.0.0.1:$PROXY_PORT" \
        "root@ssh.internal.corp" echo hello over ssh

# ---- bytes: bulk, half-close -----------------------------------------------------------------------
wait_for 5 bash -c "ss -ltn | grep -q ':$ECHO_PORT '"
check_output "1 GiB each way through one tunnel arrives intact (checksums)" "^intact" \
    python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" echo.internal.corp bulk 1024
check_output "routing by SNI from a ClientHello of over 1 KiB that comes in 300-byte pieces" "^round trip: ping" \
    python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" echo.internal.corp bighello
check_output "half-close: the client closes its side and still gets the whole answer" "answer after half-close: b'100000'" \
    python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" count.internal.corp halfclose
check_output "half-close with a bare FIN (no close_notify): the answer still comes whole" "answer after half-close: b'100000'" \
    python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" count.internal.corp halfclose-fin

# ---- refusals -------------------------------------------------------------------------------------------
check_fails "an unauthorized CN is refused" ccurl "$BOB" --resolve "web.internal.corp:$PROXY_PORT:127.0.0.1" "https://web.internal.corp:$PROXY_PORT/"
check "the refusal is logged with the CN and the reason" grep -q "Proxy: refused $BOB for web.internal.corp: not allowed" "$T/dataplane.log"
check_fails "an unknown name is refused" ccurl "$ALICE" --resolve "nothere.internal.corp:$PROXY_PORT:127.0.0.1" -k "https://nothere.internal.corp:$PROXY_PORT/"
check "the unknown name is logged" grep -q "Proxy: refused $ALICE for nothere.internal.corp: not a private name" "$T/dataplane.log"
check_fails "no client certificate: refused" curl -sS --max-time 10 --cacert "$A/ca.crt" --resolve "web.internal.corp:$PROXY_PORT:127.0.0.1" "https://web.internal.corp:$PROXY_PORT/"
check "and the reason is logged" grep -q "Proxy: handshake failed: peer did not return a certificate" "$T/dataplane.log"

# ---- a service that is down, or never answers ------------------------------------------------------------
DOWN_PORT=$(free_port)
DOWN=$(add_service Down "$DOWN_PORT" down.internal.corp)
"$ZTDNS" --data-dir "$D" authorize "$ALICE" down.internal.corp > /dev/null
sleep 0.3
check_fails "a service that is down: the client's connection is closed" \
    python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" down.internal.corp ping
check "and it is logged" grep -q "Proxy: cannot connect to service 127.0.0.1:$DOWN_PORT for $ALICE" "$T/dataplane.log"
# A service whose SYNs go unanswered (its accept queue is full): the connect timeout (500 ms here) ends the wait.
STALL_PORT=$(free_port)
start stall python3 -c "
import socket, time
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(('127.0.0.1', $STALL_PORT)); l.listen(0)
held = [socket.create_connection(('127.0.0.1', $STALL_PORT)) for _ in range(2)]  # the queue is full now
time.sleep(120)"
STALL=$(add_service Stall "$STALL_PORT" stall.internal.corp)
"$ZTDNS" --data-dir "$D" authorize "$ALICE" stall.internal.corp > /dev/null
jq --arg s "$STALL" '.[$s].connect_timeout_ms = 500' "$D/routes.json" > "$T/routes.json" && cp "$T/routes.json" "$D/routes.json"
"$ZTDNS" --data-dir "$D" reload > /dev/null
sleep 0.3
start_ms=$(date +%s%3N)
check_fails "a service that never answers the connect: the client's connection is closed" \
    python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" stall.internal.corp ping
elapsed=$(($(date +%s%3N) - start_ms))
check "within the 500 ms connect timeout (took $elapsed ms, the client's TLS handshake included)" test "$elapsed" -lt 2500
check "and it is logged as a timeout" grep -q "Proxy: cannot connect to service 127.0.0.1:$STALL_PORT for $ALICE: timed out" "$T/dataplane.log"
wait "$sniff_client"
check_output "no destination name in 5 s (SNI names the proxy, no plaintext bytes): closed" "closed by the proxy after [5-7]\." cat "$T/sniff.out"
check "and it is logged" grep -q "no destination name in time" "$T/dataplane.log"

# ---- active health checks: a dead backend found before any client meets it ------------------------------------
HC_UP=$(free_port) HC_DOWN=$(free_port)
start hc-up python3 "$HERE/echo_server.py" "$HC_UP" up
HC=$(add_service Checked "$HC_UP" checked.internal.corp)
"$ZTDNS" --data-dir "$D" authorize "$ALICE" checked.internal.corp > /dev/null
jq --arg s "$HC" --argjson up "$HC_UP" --argjson down "$HC_DOWN" \
    '.[$s] |= (del(.host, .port) + {backends: [{host: "127.0.0.1", port: $up, weight: 1}, {host: "127.0.0.1", port: $down, weight: 1}], health_check: true})' \
    "$D/routes.json" > "$T/routes.json" && cp "$T/routes.json" "$D/routes.json"
check_output "a route with two backends and health_check: true is accepted" "Reloaded" "$ZTDNS" --data-dir "$D" reload
check "the checks find the dead backend by themselves, before any client" \
    wait_for 10 grep -q "Proxy: health check: service Checked backend 127.0.0.1:$HC_DOWN is down (Connection refused)" "$T/dataplane.log"
check_fails "and not the live one" grep -q "backend 127.0.0.1:$HC_UP is down" "$T/dataplane.log"
reached=0
for _ in $(seq 20); do
    # Captured first: with pipefail, `| grep -q` can fail when grep exits before the client finished writing.
    out=$(python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" checked.internal.corp ping 2> /dev/null)
    [[ $out == up* ]] && reached=$((reached + 1))
done
check "20 tunnels in a row all reach the live backend" test "$reached" -eq 20
check_fails "and none of them tried the dead one first" grep -q "cannot connect to service 127.0.0.1:$HC_DOWN" "$T/dataplane.log"
start hc-down python3 "$HERE/echo_server.py" "$HC_DOWN" back
check "a backend that comes back is marked up again" \
    wait_for 10 grep -q "Proxy: health check: service Checked backend 127.0.0.1:$HC_DOWN is up again" "$T/dataplane.log"
back=0
for _ in $(seq 30); do
    out=$(python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" checked.internal.corp ping 2> /dev/null)
    [[ $out == back* ]] && back=$((back + 1))
done
check "and takes its share of new tunnels ($back of 30)" test "$back" -gt 0 -a "$back" -lt 30

# ---- revocation cuts open tunnels; a moved service takes new tunnels only ------------------------------------
python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$D/bundles/$CAROL" echo.internal.corp hold 10 > "$T/hold.log" 2>&1 &
_pids+=($!)
wait_for 5 grep -q connected "$T/hold.log"
"$ZTDNS" --data-dir "$D" revoke "$CAROL" > /dev/null
wait_for 3 grep -q "closed by the proxy" "$T/hold.log"
check_output "a CN revoked while its tunnel is open loses it within a second" "closed by the proxy after 0\." cat "$T/hold.log"
check_fails "and a new tunnel of the revoked CN is refused" \
    python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$D/bundles/$CAROL" echo.internal.corp ping
check "the refusal is logged with the CN and the reason" grep -q "Proxy: refused $CAROL: revoked" "$T/dataplane.log"
check_output "and curl is told why: a certificate_revoked alert" "alert certificate revoked" \
    curl -sS --max-time 5 --cacert "$D/ca/ca.crt" --cert "$D/bundles/$CAROL/cert.pem" --key "$D/bundles/$CAROL/key.pem" \
    --resolve "echo.internal.corp:$PROXY_PORT:127.0.0.1" "https://echo.internal.corp:$PROXY_PORT/"

ECHO2_PORT=$(free_port)
start echo2 python3 "$HERE/echo_server.py" "$ECHO2_PORT" moved
python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" echo.internal.corp hold 6 > "$T/old-tunnel.log" 2>&1 &
old_tunnel=$!
_pids+=($old_tunnel)
wait_for 5 grep -q connected "$T/old-tunnel.log"
jq --arg s "$ECHO" --argjson p "$ECHO2_PORT" '.[$s].port = $p' "$D/routes.json" > "$T/routes.json" && cp "$T/routes.json" "$D/routes.json"
check_output "reload after moving the service to a new backend" "Reloaded" "$ZTDNS" --data-dir "$D" reload
check_output "new tunnels go to the new backend" "^moved" python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" echo.internal.corp ping
wait "$old_tunnel"
check_output "the open tunnel to the old backend finished untouched (its echo answers after the reload)" \
    "still open after 6(\.0)?s; one more round trip: again$" cat "$T/old-tunnel.log"

# ---- nothing leaks ------------------------------------------------------------------------------------------------
fds() { ls /proc/"$dataplane_pid"/fd | wc -l; }
base=$(fds)
for _ in $(seq 20); do python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" echo.internal.corp ping > /dev/null; done
python3 "$HERE/tunnel_client.py" "$PROXY_PORT" "$A" down.internal.corp ping > /dev/null 2>&1
check "file descriptors are back to the baseline after tunnels closed" wait_for 3 bash -c "[ \$(ls /proc/$dataplane_pid/fd | wc -l) -le $base ]"
# The service sockets are io_uring direct descriptors, not in /proc/PID/fd: the slots are counted by the data plane.
sum() { "$ZTDNS" --data-dir "$D" metrics | awk -v n="$1{pid=\"$dataplane_pid\"" 'index($0, n) == 1 { s += $2 } END { print s + 0 }'; }
check "no connection or tunnel is left open (gauges back to 0)" \
    wait_for 3 bash -c "$(declare -f sum); ZTDNS='$ZTDNS' D='$D' dataplane_pid=$dataplane_pid; test \$(sum ztdns_connections_active) -eq 0 -a \$(sum ztdns_tunnels_active) -eq 0"
check "every tunnel opened was closed once, and the refused ones (service down) were never counted" \
    test "$(sum ztdns_tunnels_opened_total)" -gt 50 -a "$(sum ztdns_tunnels_opened_total)" -eq "$(sum ztdns_tunnels_closed_total)"

