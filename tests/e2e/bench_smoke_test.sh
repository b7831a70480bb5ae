#!/usr/bin/env bash
# The benchmark pipeline end to end, not its speed: `bench/run --smoke` (one
# repetition of one second per metric) against every target, then report.md,
# a PNG plot, the correctness checks (authorized client answered, unauthorized
# CN and no certificate refused), a result for each peer, and nothing left running.
. "$(dirname "$0")/lib.sh"

top=$(cd "$(dirname "$0")/../.." && pwd)
out=$T/bench

for b in zt-dotload zt-proxyload zt-echo; do
    if [ ! -x "$ZT_BUILD/bench/load/$b" ]; then
        not_ok "load generator $b built in $ZT_BUILD/bench/load"
        exit 0
    fi
done
ok "load generators built"

ZT_BUILD=$ZT_BUILD timeout 300 "$top/bench/run" --smoke --targets ztdns,ztdns-endpoint,haproxy,nginx,unbound,dnsdist,bind,direct \
    --out "$out" > "$T/run.log" 2>&1
rc=$?
case $rc in
    0) ok "bench/run --smoke finishes" ;;
    3) ok "bench/run --smoke finishes (a correctness check failed: see below)" ;;
    *) not_ok "bench/run --smoke finishes (exit $rc)"; tail -30 "$T/run.log" | sed 's/^/#   /' ;;
esac
check "report.md written" test -s "$out/report.md"
check "at least one PNG plot" sh -c "ls '$out'/*.png > /dev/null 2>&1"
check "plots are PNG images" sh -c "file '$out'/*.png | grep -q 'PNG image'"
check "raw.jsonl holds the load generators' lines" grep -q '"metric"' "$out/raw.jsonl"
check_output "report has the correctness table" "^## Correctness checks" cat "$out/report.md"

# One line per correctness check, and one per target measured.
python3 - "$out" << 'EOF'
import json, os, sys
out = sys.argv[1]
try:
    checks = json.load(open(os.path.join(out, "checks.json")))
    res = json.load(open(os.path.join(out, "results.json")))
except (OSError, ValueError) as e:
    print("not ok results.json and checks.json readable (%s)" % e)
    sys.exit(0)
for c in checks:
    desc = "check %s %s: %s" % (c["target"], c["kind"], c["check"])
    if c["status"] == "pass":
        print("ok " + desc)
    elif c["status"] == "FAIL":
        print("not ok %s (%s)" % (desc, c["detail"]))
    else:
        print("skip %s (%s: %s)" % (desc, c["status"], c["detail"]))
targets = res["targets"]
for name in ("haproxy", "nginx", "unbound", "dnsdist", "bind", "direct", "ztdns", "ztdns-endpoint"):
    st = targets.get(name, {})
    good = sorted({r["metric"] for r in res["records"] if r["target"] == name and r.get("ok")})
    bad = sorted({r["metric"] for r in res["records"] if r["target"] == name and not r.get("ok")})
    if name.startswith("ztdns") and st.get("start") and "not built yet" in st["start"]:
        print("skip %s measured (not built yet)" % name)
        continue
    if st.get("start"):
        print("not ok %s starts (%s)" % (name, st["start"].replace("\n", " ")[:300]))
        continue
    if good and not bad:
        print("ok %s measured (%s)" % (name, ", ".join(good)))
    elif good:
        print("not ok %s measured: no result for %s" % (name, ", ".join(bad)))
    else:
        reason = st.get("dot") or st.get("proxy") or "no result"
        print("not ok %s measured (%s)" % (name, reason))
    if name == "ztdns" and st.get("proxy") and "not listen" in st["proxy"]:
        print("skip ztdns proxy measured (%s)" % st["proxy"])
EOF

# Every process the run started is gone (bench/run lists them in work/pids.txt).
left=""
while read -r pid prog; do
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$prog"; then
        left="$left $pid($prog)"
    fi
done < "$out/work/pids.txt"
if [ -z "$left" ]; then ok "no process left behind"; else not_ok "no process left behind:$left"; fi
