#!/usr/bin/env bash
# The foundation end to end: `ztdns init`, ztdns-control, the admin flows of the
# seed guide (service add, client add, authorize, revoke), file formats and
# modes, certificates checked with openssl, broken reloads that change nothing,
# and a subscriber process that receives every table.
. "$(dirname "$0")/lib.sh"

D=$T/data
z() { "$ZTDNS" --data-dir "$D" "$@"; }

# ---- init ------------------------------------------------------------------
check "init creates a data dir" z init --proxy-address 203.0.113.50 --server-name edge1.test \
    --dot-listen 127.0.0.1:0 --proxy-listen 127.0.0.1:0
check_fails "init refuses an initialized dir" z init --proxy-address 203.0.113.50
check_output "init names the missing proxy address" "proxy-address is required" \
    "$ZTDNS" --data-dir "$T/other" init
check_output "init rejects a bad address with the file and key" 'ztdns.json: .proxy_addresses\[0\]: "not-an-ip" is not an IP address' \
    "$ZTDNS" --data-dir "$T/other2" init --proxy-address not-an-ip
check "CA key and server key are 0600" test "$(stat -c %a "$D/ca/ca.key")" = 600 -a "$(stat -c %a "$D/server/server.key")" = 600
check "openssl verifies the server certificate" openssl verify -CAfile "$D/ca/ca.crt" "$D/server/server.crt"
check_output "server certificate has the proxy address and name as SANs" "DNS:edge1.test.*IP Address:203.0.113.50" \
    openssl x509 -in "$D/server/server.crt" -noout -ext subjectAltName
check_output "CA is ZeroTrust CA" "subject=CN ?= ?ZeroTrust CA" openssl x509 -in "$D/ca/ca.crt" -noout -subject

# ---- control ----------------------------------------------------------------
start control "$ZTCONTROL" --data-dir "$D"
if ! wait_for 10 test -S "$D/control.sock"; then
    not_ok "ztdns-control starts"; cat "$T/control.log"; exit 1
fi
ok "ztdns-control starts"
check "control socket is 0600" test "$(stat -c %a "$D/control.sock")" = 600
check_output "a second control on the same dir refuses" "in use by another ztdns-control" "$ZTCONTROL" --data-dir "$D"
check_output "status answers" "config: ok" z status

# ---- service add: the seed's formats ------------------------------------------
check_output "service add" "Service added: s[0-9a-f]{12}" \
    z service add --name "PostgreSQL Prod" --host 198.19.10.50 --port 5432 --domain db.internal.corp
S=$(jq -r 'keys[0]' "$D/routes.json")
check "service CN is s + 12 hex" grep -Eq '^s[0-9a-f]{12}$' <<< "$S"
check "zones.json record points at the proxy, not the service" \
    test "$(jq -r '.["db.internal.corp"].records["@"]' "$D/zones.json")" = "A 203.0.113.50"
check "zones.json service_cn and allowed_endpoints" \
    test "$(jq -c '.["db.internal.corp"] | [.service_cn, .allowed_endpoints]' "$D/zones.json")" = "[\"$S\",[\"$S\"]]"
check "routes.json has the seed's host, port, domains, name" \
    test "$(jq -c ".[\"$S\"] | [.host, .port, .domains, .name]" "$D/routes.json")" = '["198.19.10.50",5432,["db.internal.corp"],"PostgreSQL Prod"]'
check "service bundle verifies" openssl verify -CAfile "$D/ca/ca.crt" "$D/bundles/$S/cert.pem"
check_output "service certificate subject" "CN ?= ?$S, ?O ?= ?Service-PostgreSQL Prod|O ?= ?Service-PostgreSQL Prod, ?CN ?= ?$S" \
    openssl x509 -in "$D/bundles/$S/cert.pem" -noout -subject -nameopt RFC2253,sep_comma_plus_space
check_output "service add refuses a taken domain" "zone db.internal.corp exists already" \
    z service add --name Other --host 10.0.0.1 --port 1 --domain DB.internal.corp
check_output "service add refuses a bad port" "--port 70000: not a port" \
    z service add --name Other --host 10.0.0.1 --port 70000 --domain other.internal.corp

# ---- client add ----------------------------------------------------------------
check_output "client add" "Client added: c[0-9a-f]{12} \(alice-laptop\)" z client add alice-laptop
C=$(jq -r 'to_entries[] | select(.value.kind == "client") | .key' "$D/endpoints.json" | head -1)
B=$D/bundles/$C
check "client bundle has cert, key, ca, endpoint.json" test -f "$B/cert.pem" -a -f "$B/key.pem" -a -f "$B/ca.crt" -a -f "$B/endpoint.json"
check "client key is 0600" test "$(stat -c %a "$B/key.pem")" = 600
check "openssl verifies the client certificate" openssl verify -CAfile "$B/ca.crt" "$B/cert.pem"
check_output "client subject CN and O" "CN ?= ?$C" openssl x509 -in "$B/cert.pem" -noout -subject
check_output "client O=Client-NAME" "O ?= ?Client-alice-laptop" openssl x509 -in "$B/cert.pem" -noout -subject
check "client certificate is valid for 3650 days" bash -c "
    nb=\$(date -d \"\$(openssl x509 -in '$B/cert.pem' -noout -startdate | cut -d= -f2)\" +%s)
    na=\$(date -d \"\$(openssl x509 -in '$B/cert.pem' -noout -enddate | cut -d= -f2)\" +%s)
    days=\$(( (na - nb) / 86400 )); [ \$days -ge 3649 ] && [ \$days -le 3651 ]"
check "openssl reads the client key" openssl pkey -in "$B/key.pem" -noout
check "endpoint.json names the DoT server and proxy" \
    test "$(jq -r '.cn + " " + .server_name' "$B/endpoint.json")" = "$C edge1.test"
check "endpoints.json registers the client" test "$(jq -r ".[\"$C\"].kind" "$D/endpoints.json")" = client

# ---- a subscriber sees every table ------------------------------------------------
start watch "$ZT_BUILD/tests/zt-table-watch" "$D/table.sock" "$C" db.internal.corp
check "a subscriber receives the current table" wait_for 5 grep -q "zones 1 denied" "$T/watch.log"

# ---- authorize / deauthorize ------------------------------------------------------
check_output "authorize" "may now resolve and reach db.internal.corp" z authorize "$C" db.internal.corp
check "zones.json lists the client" test "$(jq -r '.["db.internal.corp"].allowed_endpoints | index("'"$C"'") != null' "$D/zones.json")" = true
check_output "authorize an unknown CN fails in one line" "^c000000000000 is not a registered endpoint" z authorize c000000000000 db.internal.corp
check_output "authorize an unknown domain fails" "nope.internal.corp is not a zone" z authorize "$C" nope.internal.corp
check "the subscriber sees the authorization" wait_for 5 grep -q "allowed" "$T/watch.log"
check_output "status lists the subscriber and what it adopted" "data planes: 1" z status
check_output "deauthorize" "may no longer reach" z deauthorize "$C" db.internal.corp
check "the subscriber sees the deauthorization" wait_for 5 bash -c "tail -1 '$T/watch.log' | grep -q denied"
z authorize "$C" db.internal.corp > /dev/null
wait_for 5 bash -c "tail -1 '$T/watch.log' | grep -q allowed"

# ---- list ----------------------------------------------------------------------
check_output "list shows services, zones, endpoints" "PostgreSQL Prod" z list
check "list --json is JSON with the three files" bash -c "'$ZTDNS' --data-dir '$D' list --json | jq -e '.zones and .routes and .endpoints' > /dev/null"

# ---- a broken file changes nothing ---------------------------------------------------
cp "$D/routes.json" "$T/routes.good"
gens_before=$(grep -c generation "$T/watch.log")
jq ".[\"$S\"].port = 70000" "$T/routes.good" > "$D/routes.json"
check_output "reload of a broken routes.json names file, key and problem" \
    "routes.json: .$S.port: 70000 is not a port \(1-65535\)" z reload
check_fails "reload of a broken file exits non-zero" z reload
check_output "status says the previous table keeps serving" "NOT LOADED" z status
check "the subscriber keeps its table after a broken reload" bash -c "tail -1 '$T/watch.log' | grep -q allowed"
check "no new table was published by the broken reloads" test "$(grep -c generation "$T/watch.log")" = "$gens_before"
check_output "commands refuse to write over a broken config" "have errors; fix them first" z client add bob
cp "$T/routes.good" "$D/routes.json"
check_output "reload after the fix" "Reloaded: 1 zones, 1 routes, 2 endpoints" z reload
kill -HUP "$control_pid"
check "SIGHUP reloads" wait_for 5 grep -q "config loaded (1 zones" "$T/control.log"

# ---- revoke ------------------------------------------------------------------------
check_output "revoke" "Revoked $C; removed from db.internal.corp" z revoke "$C"
check "the subscriber sees the revocation" wait_for 5 bash -c "tail -1 '$T/watch.log' | grep -q denied"
check "endpoints.json marks it revoked" test "$(jq -r ".[\"$C\"].revoked" "$D/endpoints.json")" = true
check "revoked CN is gone from every allowed_endpoints" test "$(jq -r '[.[].allowed_endpoints[]] | index("'"$C"'")' "$D/zones.json")" = null
check_output "a revoked CN cannot be authorized again" "is revoked" z authorize "$C" db.internal.corp

# ---- hygiene ----------------------------------------------------------------------
check_fails "no private key in the control log" grep -q "PRIVATE KEY" "$T/control.log"
check "no temp files left in the data dir" test -z "$(find "$D" -name '*.tmp.*')"
check_output "log lines have the seed's format" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z \[INFO\] Control: ' head -1 "$T/control.log"
