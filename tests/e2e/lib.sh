# Shared helpers of the end-to-end tests: a private temp dir cleaned up on
# exit, processes killed on exit, TAP-like result lines that scripts/test
# counts ("ok ...", "not ok ...", "skip ... (reason)"), and bounded waits.
set -uo pipefail

ZT_BUILD=${ZT_BUILD:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build}
ZTDNS=$ZT_BUILD/tools/ztdns
ZTCONTROL=$ZT_BUILD/control/ztdns-control
T=$(mktemp -d /tmp/zt-e2e.XXXXXX)
_pids=()
_failed=0

_cleanup() {
    for p in "${_pids[@]+"${_pids[@]}"}"; do kill "$p" 2> /dev/null; done
    wait 2> /dev/null
    if [ "$_failed" -eq 0 ]; then rm -rf "$T"; else echo "# kept $T for inspection"; fi
}
trap _cleanup EXIT

ok() { echo "ok $*"; }
not_ok() { echo "not ok $*"; _failed=1; }
skip() { echo "skip $*"; }

# check DESCRIPTION COMMAND...: ok when the command succeeds.
check() {
    local desc=$1; shift
    if "$@" > "$T/last.out" 2>&1; then ok "$desc"; else not_ok "$desc"; sed 's/^/#   /' "$T/last.out" | head -20; fi
}
# check_fails DESCRIPTION COMMAND...: ok when the command fails.
check_fails() {
    local desc=$1; shift
    if "$@" > "$T/last.out" 2>&1; then not_ok "$desc (unexpectedly succeeded)"; sed 's/^/#   /' "$T/last.out" | head -20; else ok "$desc"; fi
}
# check_output DESCRIPTION PATTERN COMMAND...: ok when the output matches the grep -E pattern.
check_output() {
    local desc=$1 pattern=$2; shift 2
    "$@" > "$T/last.out" 2>&1
    if grep -Eq -- "$pattern" "$T/last.out"; then ok "$desc"; else not_ok "$desc (expected /$pattern/)"; sed 's/^/#   /' "$T/last.out" | head -20; fi
}

# wait_for TIMEOUT_S COMMAND...: polls every 50 ms; fails after the timeout.
wait_for() {
    local deadline=$((SECONDS + $1)); shift
    until "$@" > /dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.05
    done
}

# start NAME COMMAND...: runs in the background, output in $T/NAME.log.
start() {
    local name=$1; shift
    "$@" > "$T/$name.log" 2>&1 &
    _pids+=($!)
    eval "${name//-/_}_pid=$!"
}

# A free TCP port on loopback (the kernel picks it).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

ZTDATAPLANE=$ZT_BUILD/dataplane/ztdns-dataplane
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# start_upstream: a local unbound on a free port answering www.public.test
# (tests never reach the internet). Sets UPSTREAM_PORT.
start_upstream() {
    UPSTREAM_PORT=$(free_port)
    cat > "$T/unbound.conf" <<CONF
server:
    interface: 127.0.0.1@$UPSTREAM_PORT
    do-daemonize: no
    use-syslog: no
    logfile: ""
    chroot: ""
    username: ""
    directory: "$T"
    pidfile: ""
    access-control: 127.0.0.0/8 allow
    local-zone: "public.test." static
    local-data: "www.public.test. 300 IN A 198.18.0.10"
    local-data: "other.public.test. 300 IN A 198.18.0.11"
    local-data: "zero.public.test. 0 IN A 198.18.0.12"
    local-data: 'big.public.test. 300 IN TXT "$(printf 'a%.0s' $(seq 250))" "$(printf 'b%.0s' $(seq 250))" "$(printf 'c%.0s' $(seq 250))" "$(printf 'd%.0s' $(seq 250))" "$(printf 'e%.0s' $(seq 250))" "$(printf 'f%.0s' $(seq 250))"'
    local-zone: "corp." static
    local-zone: "." refuse
CONF
    start unbound unbound -d -c "$T/unbound.conf"
    wait_for 10 dig @127.0.0.1 -p "$UPSTREAM_PORT" +time=1 +tries=1 www.public.test
}

# setup_appliance: a data dir with CA, the seed's PostgreSQL service and clients
# alice (authorized), bob (not authorized), carol (authorized); control running.
# Sets D, S, ALICE, BOB, CAROL.
setup_appliance() {
    D=$T/data
    "$ZTDNS" --data-dir "$D" init --proxy-address 203.0.113.50 --server-name edge1.test \
        --dot-listen 127.0.0.1:0 --proxy-listen 127.0.0.1:0 --upstream "127.0.0.1:${UPSTREAM_PORT:-9}" > /dev/null || return 1
    # Short timeouts keep the tests quick.
    jq '.limits.upstream_timeout_ms = 700 | .limits.handshake_timeout_ms = 2000' "$D/ztdns.json" > "$T/z.json" && mv "$T/z.json" "$D/ztdns.json"
    start control "$ZTCONTROL" --data-dir "$D"
    wait_for 10 test -S "$D/control.sock" || return 1
    local z="$ZTDNS --data-dir $D"
    $z service add --name "PostgreSQL Prod" --host 198.19.10.50 --port 5432 --domain db.internal.corp > /dev/null || return 1
    S=$(jq -r 'keys[0]' "$D/routes.json")
    for who in alice bob carol; do $z client add "$who" > /dev/null || return 1; done
    ALICE=$(jq -r 'to_entries[] | select(.value.name == "alice") | .key' "$D/endpoints.json")
    BOB=$(jq -r 'to_entries[] | select(.value.name == "bob") | .key' "$D/endpoints.json")
    CAROL=$(jq -r 'to_entries[] | select(.value.name == "carol") | .key' "$D/endpoints.json")
    $z authorize "$ALICE" db.internal.corp > /dev/null && $z authorize "$CAROL" db.internal.corp > /dev/null
}

# start_dataplane [ARGS...]: starts ztdns-dataplane on the data dir; sets DOT_PORT.
start_dataplane() {
    start dataplane "$ZTDATAPLANE" --data-dir "$D" --shards 2 "$@"
    wait_for 10 grep -q "listening on .*(DoT" "$T/dataplane.log" || return 1
    DOT_PORT=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$T/dataplane.log" | head -1 | cut -d: -f2)
}

# dot CN [dig args...]: dig over TLS with CN's bundle.
dot() {
    local b=$D/bundles/$1; shift
    dig @127.0.0.1 -p "$DOT_PORT" +tls +tls-ca="$b/ca.crt" +tls-hostname=edge1.test \
        +tls-certfile="$b/cert.pem" +tls-keyfile="$b/key.pem" +time=3 +tries=1 "$@"
}

# start_dataplane also reports the proxy port when there is one.
proxy_port() { grep -o 'listening on 127.0.0.1:[0-9]* (TLS proxy' "$T/dataplane.log" | head -1 | cut -d: -f2 | cut -d' ' -f1; }

# add_service NAME PORT DOMAIN: a service on 127.0.0.1:PORT; prints its CN.
add_service() {
    "$ZTDNS" --data-dir "$D" service add --name "$1" --host 127.0.0.1 --port "$2" --domain "$3" > /dev/null || return 1
    jq -r --arg d "$3" 'to_entries[] | select(.value.domains | index($d)) | .key' "$D/routes.json"
}

# tls_wrap LOCAL_PORT CN NAME: a local plain TCP listener whose connections go
# through the proxy in mTLS with SNI = NAME (what ztdns-endpoint will do).
tls_wrap() {
    local b=$D/bundles/$2
    start "wrap-$1" socat "TCP-LISTEN:$1,bind=127.0.0.1,reuseaddr,fork" \
        "EXEC:openssl s_client -quiet -nocommands -no_ign_eof -verify_return_error -servername $3 -cert $b/cert.pem -key $b/key.pem -CAfile $b/ca.crt -host 127.0.0.1 -port $PROXY_PORT"
    wait_for 5 bash -c "ss -ltn | grep -q ':$1 '"
}
