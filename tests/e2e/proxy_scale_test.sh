#!/usr/bin/env bash
# 10,000 concurrent tunnels through the proxy, held and closed cleanly, within
# this machine's hard limit of 20,000 open files per process: the clients are
# two zt-proxyload processes (5,000 mTLS tunnels each, one round trip each),
# the service is two zt-echo processes (two weighted backends of one route),
# and the data plane holds 10,000 client sockets in its fd table and the
# 10,000 service sockets as io_uring direct descriptors.
. "$(dirname "$0")/lib.sh"

LOAD=$ZT_BUILD/bench/load/zt-proxyload
ECHOD=$ZT_BUILD/bench/load/zt-echo
if [ ! -x "$LOAD" ] || [ ! -x "$ECHOD" ]; then
    skip "10,000 tunnels (the bench load generators are not built: meson -Dbenchmarks=true)"
    exit 0
fi
TUNNELS=${ZT_SCALE_TUNNELS:-10000}
HALF=$((TUNNELS / 2))

setup_appliance || { not_ok "appliance set up"; cat "$T/control.log"; exit 1; }
P1=$(free_port) P2=$(free_port)
start echo1 "$ECHOD" --echo "127.0.0.1:$P1"
start echo2 "$ECHOD" --echo "127.0.0.1:$P2"
wait_for 5 grep -q '"event":"listening"' "$T/echo1.log" && wait_for 5 grep -q '"event":"listening"' "$T/echo2.log" ||
    { not_ok "the echo services start"; cat "$T/echo1.log"; exit 1; }
ECHO=$(add_service Echo "$P1" echo.internal.corp) || { not_ok "service added"; exit 1; }
"$ZTDNS" --data-dir "$D" authorize "$ALICE" echo.internal.corp > /dev/null
jq --arg s "$ECHO" --argjson p1 "$P1" --argjson p2 "$P2" \
    '.[$s] |= (del(.host, .port) + {backends: [{host: "127.0.0.1", port: $p1, weight: 1}, {host: "127.0.0.1", port: $p2, weight: 1}]})' \
    "$D/routes.json" > "$T/routes.json" && mv "$T/routes.json" "$D/routes.json"
jq '.limits.max_connections_per_cn = 20000 | .limits.max_connections_per_shard = 16384' "$D/ztdns.json" > "$T/ztdns.json" &&
    mv "$T/ztdns.json" "$D/ztdns.json"
check "the two backends and the limits are accepted" "$ZTDNS" --data-dir "$D" reload

start_dataplane || { not_ok "ztdns-dataplane starts"; cat "$T/dataplane.log"; exit 1; }
PROXY_PORT=$(proxy_port)
DP=$dataplane_pid
fds() { ls "/proc/$DP/fd" | wc -l; }
rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$DP/status"; }
sum() { "$ZTDNS" --data-dir "$D" metrics | awk -v n="$1{pid=\"$DP\"" 'index($0, n) == 1 { s += $2 } END { print s + 0 }'; }
check "the data plane keeps service sockets as direct descriptors (no fallback logged)" \
    bash -c "! grep -q 'service sockets use the process' '$T/dataplane.log'"
echo "# data plane fd limit: $(awk '/Max open files/ { print $4 }' "/proc/$DP/limits")"

B=$D/bundles/$ALICE
load_args=(--server "127.0.0.1:$PROXY_PORT" --ca "$B/ca.crt" --cert "$B/cert.pem" --key "$B/key.pem"
    --sni echo.internal.corp --verify-name edge1.test --mode idle --connections "$HALF" --connect-concurrency 100
    --timeout 20 --duration 300)
base_fds=$(fds)
base_rss=$(rss_kb)
start load1 "$LOAD" "${load_args[@]}"
start load2 "$LOAD" "${load_args[@]}"
established() { grep -q '"event":"idle_established"' "$T/load1.log" && grep -q '"event":"idle_established"' "$T/load2.log"; }
check "two client processes set up $TUNNELS mTLS tunnels, one round trip each (within 180 s)" wait_for 180 established
check "the data plane counts $TUNNELS connections open" wait_for 10 bash -c "$(declare -f sum); ZTDNS=$ZTDNS D=$D DP=$DP; test \$(sum ztdns_connections_active) -ge $TUNNELS"
held_fds=$(fds)
held_rss=$(rss_kb)
echo "# data plane: $base_fds fds before, $held_fds with $TUNNELS tunnels; RSS $base_rss KiB before, $held_rss KiB after ($(( (held_rss - base_rss) * 1024 / TUNNELS )) bytes per tunnel)"
check "its fd table holds one entry per tunnel, not two (under the 20,000 limit)" \
    test "$held_fds" -lt $((base_fds + TUNNELS + 100))
check "the echo services hold the service side: $TUNNELS connections between them" \
    bash -c "test \$(( \$(ls /proc/$echo1_pid/fd | wc -l) + \$(ls /proc/$echo2_pid/fd | wc -l) )) -ge $TUNNELS"
check "a new client is still served while $TUNNELS tunnels are held" \
    bash -c "'$LOAD' --server 127.0.0.1:$PROXY_PORT --ca '$B/ca.crt' --cert '$B/cert.pem' --key '$B/key.pem' --sni echo.internal.corp --verify-name edge1.test --mode check --timeout 5 | grep -q '\"result\":\"ok\"'"

kill -TERM "$load1_pid" "$load2_pid"
wait "$load1_pid" "$load2_pid" 2> /dev/null
for l in load1 load2; do
    check "$l: every tunnel was established, none failed" \
        grep -Eq "\"metric\":\"idle_tunnels\",\"value\":$HALF,.*\"errors\":0," "$T/$l.log"
done
check "every tunnel is closed in the data plane (connections back to 0)" \
    wait_for 20 bash -c "$(declare -f sum); ZTDNS=$ZTDNS D=$D DP=$DP; test \$(sum ztdns_connections_active) -eq 0"
check "the tunnels closed are counted: $TUNNELS opened, $TUNNELS closed" \
    bash -c "$(declare -f sum); ZTDNS=$ZTDNS D=$D DP=$DP; test \$(sum ztdns_tunnels_opened_total) -ge $TUNNELS -a \$(sum ztdns_tunnels_closed_total) -ge $TUNNELS"
check "file descriptors are back to the baseline" wait_for 10 bash -c "test \$(ls /proc/$DP/fd | wc -l) -le $((base_fds + 2))"
check "the echo services saw every service connection closed" \
    wait_for 10 bash -c "test \$(( \$(ls /proc/$echo1_pid/fd | wc -l) + \$(ls /proc/$echo2_pid/fd | wc -l) )) -lt 100"
check "the audit log has a closing line per tunnel" \
    test "$(grep -c 'Proxy: Connection closed for' "$T/dataplane.log")" -ge "$TUNNELS"
check "and the data plane serves on" \
    bash -c "'$LOAD' --server 127.0.0.1:$PROXY_PORT --ca '$B/ca.crt' --cert '$B/cert.pem' --key '$B/key.pem' --sni echo.internal.corp --verify-name edge1.test --mode check --timeout 5 | grep -q '\"result\":\"ok\"'"
