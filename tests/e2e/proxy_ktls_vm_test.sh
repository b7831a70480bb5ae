#!/usr/bin/env bash
# The proxy's kernel TLS fast path end to end, where the kernel has kTLS:
# builds a data dir here with the real tools (ztdns init, ztdns-control for
# service add / client add / authorize, then stopped: route.table, CA,
# certificates and keys stay), boots Debian 12's kernel under QEMU/TCG
# (tests/vm/run) with that data dir, the real ztdns-dataplane (dynamically
# linked: build-initramfs brings its libraries) and tunnel_check, and runs
# tests/vm/proxy_ktls inside: services on fixed loopback ports,
# `ztdns-dataplane --no-control --ktls on --shards 2`, one wolfSSL client
# per case (bulk, records sent with the Finished, half-close, service closes
# first, KeyUpdate, TLS 1.2 ECDHE-ECDSA-AES128-GCM, ChaCha20 staying in user
# space, OpenSSL's s_client as a real client, a CN revoked while its kTLS tunnel is open: the table file from
# `ztdns revoke` swapped in and SIGHUP), and checks on the dataplane's log.
# One line per case and check.
# Skips, saying why, when the VM cannot be started here.
. "$(dirname "$0")/lib.sh"

tunnel_check=$ZT_BUILD/tests/vm/tunnel_check
vmrun=$HERE/../vm/run
# Inside the VM (fixed: nothing else listens there).
PROXY_PORT=8443 ECHO_PORT=7001 COUNT_PORT=7002 CLOSE_PORT=7003
BULK_MIB=${ZT_VM_BULK_MIB:-32}

if [ ! -x "$tunnel_check" ]; then
    skip "proxy kTLS VM tier (tunnel_check not built: this build cannot link statically, e.g. a sanitizer build)"
    exit 0
fi

# ---- the data dir, made by the real tools ------------------------------------------------------------
D=$T/data
z() { "$ZTDNS" --data-dir "$D" "$@" > /dev/null; }
setup() {
    "$ZTDNS" --data-dir "$D" init --proxy-address 127.0.0.1 --server-name edge1.test \
        --dot-listen 127.0.0.1:0 --proxy-listen "127.0.0.1:$PROXY_PORT" --upstream 127.0.0.1:9 > /dev/null || return 1
    # The TLS 1.2 case needs the proxy to accept TLS 1.2.
    jq '.tls_min_version = "1.2"' "$D/ztdns.json" > "$T/z.json" && mv "$T/z.json" "$D/ztdns.json" || return 1
    start control "$ZTCONTROL" --data-dir "$D"
    wait_for 10 test -S "$D/control.sock" || return 1
    z service add --name Echo --host 127.0.0.1 --port "$ECHO_PORT" --domain echo.internal.corp || return 1
    z service add --name Count --host 127.0.0.1 --port "$COUNT_PORT" --domain count.internal.corp || return 1
    z service add --name Close --host 127.0.0.1 --port "$CLOSE_PORT" --domain close.internal.corp || return 1
    z client add alice || return 1
    CN=$(jq -r 'to_entries[] | select(.value.name == "alice") | .key' "$D/endpoints.json")
    for d in echo count close; do z authorize "$CN" "$d.internal.corp" || return 1; done
    # bob's tunnel is revoked in the VM: the table file after `ztdns revoke` is kept aside.
    z client add bob || return 1
    BOB=$(jq -r 'to_entries[] | select(.value.name == "bob") | .key' "$D/endpoints.json")
    z authorize "$BOB" echo.internal.corp || return 1
    cp "$D/route.table" "$T/route-before.table"
    z revoke "$BOB" || return 1
    mv "$D/route.table" "$D/route-revoked.table" && cp "$T/route-before.table" "$D/route.table" || return 1
    # Control is not needed in the VM (the dataplane runs --no-control on route.table).
    kill "$control_pid" && wait "$control_pid" 2> /dev/null
    rm -f "$D/control.sock" "$D/table.sock"
    test -s "$D/route.table" && test -s "$D/bundles/$CN/cert.pem"
}
if ! setup > "$T/setup.log" 2>&1; then
    not_ok "proxy kTLS VM: data dir set up with ztdns and ztdns-control"
    sed 's/^/#   /' "$T/setup.log" "$T/control.log" 2> /dev/null | tail -20
    exit 1
fi
cat > "$T/proxy-ktls.env" << ENV
CN=$CN
BOB=$BOB
PROXY_PORT=$PROXY_PORT
ECHO_PORT=$ECHO_PORT
COUNT_PORT=$COUNT_PORT
CLOSE_PORT=$CLOSE_PORT
BULK_MIB=$BULK_MIB
ENV

# ---- the VM ----------------------------------------------------------------------------------------------
start=$SECONDS
ZT_VM_TIMEOUT=${ZT_VM_TIMEOUT:-170} "$vmrun" --keep "$T/vm" "$HERE/../vm/proxy_ktls" \
    "$tunnel_check=/bin/tunnel_check" "$ZTDATAPLANE=/bin/ztdns-dataplane" "$(command -v openssl)=/bin/openssl" "$D=/data" \
    "$T/proxy-ktls.env=/etc/zt-proxy-ktls.env" > "$T/vm.log" 2>&1
rc=$?
echo "# tests/vm/run exited $rc after $((SECONDS - start))s"
if [ $rc = 77 ]; then
    skip "proxy kTLS VM tier ($(sed -n 's/^skipped: //p' "$T/vm.log" | tail -1))"
    exit 0
fi

# The VM's lines: "ok|not ok|skip proxy_ktls: <case>: <detail>".
grep -E '^#' "$T/vm.log"
grep -E '^(ok|not ok|skip) ' "$T/vm.log" | sed -E 's/^(ok|not ok|skip) proxy_ktls: /\1 proxy kTLS in VM: /'
grep -q '^not ok ' "$T/vm.log" && _failed=1
if [ $rc != 0 ] && ! grep -q '^not ok ' "$T/vm.log"; then
    not_ok "proxy kTLS VM run (tests/vm/run exited $rc)"
    sed 's/^/#   /' "$T/vm.log" | tail -40
fi
[ $rc = 0 ]
