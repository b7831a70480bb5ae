"""report.md and the gnuplot PNGs from results.json (see harness.py).

Every figure is the median over the repetitions, with min-max beside it; ratios
are ztdns's median over the peer's; server CPU per operation is the server's
utime+stime over the measured window divided by the operations in it.
"""

import math
import os
import statistics
import subprocess

REFERENCE = """\
Measured on this machine when the issues were written (loopback, TLS 1.3, ECDSA P-256; the same method:
server on CPU 0, load generator and backends on CPU 1):

| figure | value | source |
|---|---|---|
| unbound 1.17 (1 thread) DoT, 4 connections x 32 in flight | 67,900 q/s, ~14 us server CPU per query | issue 3 |
| dnsdist 1.7 DoT | 140,000 q/s using 1.2-1.6 cores | issue 3 |
| BIND 9.18 DoT (client certificate required, no CN filter) | 60,900 q/s | issue 3 |
| new DoT connection (handshake + 1 query), unbound / dnsdist (no client verification) | 560-600 us server CPU each | issue 3 |
| new DoT connection, BIND with client verification | 1,570 us server CPU | issue 3 |
| HAProxy 2.6 handshakes, one proxy core | ~560 per proxy CPU-second | issue 4 |
| HAProxy 2.6 bulk through one core | ~700 MB/s | issue 4 |
| HAProxy 2.6 64 B ping-pong p50 | 217 us (plain TCP across the two cores: 77 us) | issue 4 |
| RSS per idle tunnel | HAProxy 28.7 KB, nginx 51.8 KB | issue 4 |
| AES-128-GCM, one core | ~3,500 MB/s | issue 4 |

Goals for ztdns (same load generator, same run): DoT q/s >= 2x unbound and >= dnsdist; <= 5 us server CPU per
query; <= 150 us server CPU per new mTLS connection; p99 < 1 ms at half of its maximum rate; zero allocations per
private-zone query (a unit test shows it, not this harness); proxy bulk >= 2x HAProxy; handshakes per CPU-second
>= 5x HAProxy; added p50 latency over plain TCP <= half of HAProxy's; memory per idle tunnel <= half of HAProxy's.
"""


# Open loop: a latency whose queries left this late (p99 us after their intended time) measures the generator.
LATE_US = 50


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float) and math.isnan(v):
        return "-"
    a = abs(v)
    if a >= 100:
        s = "{:,.0f}".format(v)
    elif a >= 10:
        s = "%.1f" % v
    else:
        s = "%.2f" % v
    return s + ((" " + unit) if unit else "")


def rng(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return "%s-%s" % (fmt(min(xs)), fmt(max(xs)))


class Report:
    def __init__(self, out, res):
        self.out = out
        self.res = res
        self.lines = []
        self.plots = []
        self.plot_dir = os.path.join(out, "plot-data")
        os.makedirs(self.plot_dir, exist_ok=True)
        self.order = res["order"]
        self.titles = {n: res["targets"][n].get("title", n) for n in self.order}

    def w(self, s=""):
        self.lines.append(s)

    def recs(self, metric, target=None):
        return [r for r in self.res["records"] if r["metric"] == metric and r.get("ok")
                and (target is None or r["target"] == target)]

    def targets_of(self, metric):
        seen = {r["target"] for r in self.res["records"] if r["metric"] == metric}
        return [t for t in self.order if t in seen]

    def stat(self, metric, target, key):
        return med([r.get(key) for r in self.recs(metric, target)])

    # ---- sections --------------------------------------------------------------------------------------------------

    def header(self):
        m = self.res["machine"]
        p = self.res["profile"]
        self.w("# zerotrust-dns: side-by-side benchmark report")
        self.w()
        self.w("Run %s, `%s` (profile **%s**: %d repetition(s) of %g s per metric after %g s warm-up, interleaved "
               "A B C A B C; %d idle tunnels), %.0f s in all." % (
                   m["date"], m["command"], self.res["profile_name"], p["reps"], p["duration"], p["warmup"],
                   p["idle_n"], m.get("elapsed_s", 0)))
        self.w()
        self.w("| machine | |")
        self.w("|---|---|")
        self.w("| CPU | %s, %d cores |" % (m["cpu"], m["cores"]))
        self.w("| kernel | %s (kTLS: %s) |" % (m["kernel"], "yes" if m["ktls"] else "no, user-space TLS only"))
        self.w("| memory | %s |" % m["memory"])
        if m.get("tcp_cc"):
            self.w("| TCP congestion control | %s |" % m["tcp_cc"])
        if m.get("damon"):
            self.w("| DAMON memory monitor running | %s |" % m["damon"])
        self.w("| load average at start / end | %s / %s |" % (" ".join(m["loadavg_start"]),
                                                              " ".join(m.get("loadavg_end", []))))
        self.w("| CPU busy before the run (1 s sample, per CPU) | %s |" % ", ".join(
            "%.0f%%" % (100 * b) for b in m.get("busy_before", [])))
        self.w("| load generator TLS | %s |" % m["wolfssl"])
        self.w("| openssl | %s |" % m["openssl"])
        self.w()
        self.w("| target | version | DoT | proxy | server threads' CPUs |")
        self.w("|---|---|---|---|---|")
        for n in self.order:
            st = self.res["targets"][n]
            no_dot = n in ("haproxy", "nginx", "ztdns-endpoint", "direct")
            dot = "-" if no_dot else ("measured" if not st["dot"] else st["dot"])
            proxy = "-" if n in ("unbound", "dnsdist", "bind") else ("measured" if not st["proxy"] else st["proxy"])
            if n == "ztdns" and st.get("start") and "not built yet" in st["start"]:
                dot = proxy = "**ztdns: not built yet**"
            self.w("| %s | %s | %s | %s | %s |" % (n, st["version"].replace("|", "/"), dot.replace("|", "/"),
                                                    proxy.replace("|", "/"), st.get("affinity") or "-"))
        self.w()
        self.w("How each target is set up (configs in `work/<target>/`, templates in `bench/peers/`):")
        self.w()
        for n in self.order:
            for note in self.res["targets"][n].get("notes", []):
                self.w("- **%s**: %s" % (n, note))
        self.w()
        self.w("Method: the server under test is pinned to CPU 0 (`taskset -c 0`), the load generator "
               "(`zt-dotload`/`zt-proxyload`, bench/load) and the backends (`zt-echo`) to CPU 1, so figures are per "
               "server core. TLS 1.3 with AES-128-GCM (the load generator offers only that), ECDSA P-256 "
               "certificates unless a row says RSA 4096, a client certificate on every connection, full handshakes "
               "(no resumption), TCP_NODELAY on the client. **Server CPU per operation** = utime+stime of every "
               "process of the server (/proc/PID/stat) sampled at the edges of the measured window, divided by the "
               "operations completed in it: the steadiest figure on a shared machine. Latency is measured by the "
               "load generator (log-linear histogram, < 1% error); the fixed-rate DoT latency is open loop, "
               "counted from each query's intended send time. MB = 10^6 bytes. \"(client-bound)\" marks a figure for "
               "which CPU 1 (load generator and backends) was more than 90% busy: that rate is the client side's "
               "limit, and the server CPU per operation is the figure to compare. In open loop the generator "
               "polls rather than sleeps between queries, so CPU 1 is always busy there; \"(generator-bound)\" "
               "marks a latency for which the queries' p99 send lag (how late they left after their intended "
               "time, which the latency includes) exceeded " + str(LATE_US) + " us.")
        other = [r["cpu0_other"] for r in self.res["records"] if r.get("ok") and "cpu0_other" in r]
        irq = [r["cpu0_irq"] for r in self.res["records"] if r.get("ok") and "cpu0_irq" in r]
        if other:
            self.w()
            self.w("Other processes on CPU 0 during the measured windows (CPU 0 busy minus interrupt time minus the "
                   "server's own CPU time): median %.0f%%, max %.0f%% of the core.%s Interrupt and softirq time on "
                   "CPU 0 (loopback delivery, not in any process's CPU time, so not in the per-operation "
                   "figures): median %.0f%%, max %.0f%%." % (
                       100 * statistics.median(other), 100 * max(other),
                       " **The machine was not quiet: treat rates and tail latencies as lower bounds and prefer "
                       "CPU per operation.**" if statistics.median(other) > 0.05 else "",
                       100 * statistics.median(irq or [0]), 100 * max(irq or [0])))
        lw = [r["load_wait_ms"] / r["duration"] for r in self.res["records"]
              if r.get("ok") and "load_wait_ms" in r and "send_lag_p99_us" in r and r.get("duration")]
        if lw:
            self.w()
            self.w("In the fixed-rate windows the load generator polls and never sleeps, so its run-queue wait "
                   "(/proc/PID/task/*/schedstat: runnable while another task had CPU 1) is time other tasks took "
                   "from it: median %s ms, max %s ms per second of window. Such a wait delays every query due "
                   "or answered in it, and the latencies include it." % (fmt(statistics.median(lw)), fmt(max(lw))))
        self.w()
        for note in self.res["notes"]:
            self.w("> Note: %s" % note)
        if self.res["notes"]:
            self.w()

    def checks(self):
        self.w("## Correctness checks (before anything is measured)")
        self.w()
        cs = self.res["checks"]
        passed = sum(c["status"] == "pass" for c in cs)
        failed = sum(c["status"] == "FAIL" for c in cs)
        self.w("%d passed, %d failed, %d not applicable, %d skipped. A target that fails a check it claims to "
               "enforce is not measured on that side." % (passed, failed, sum(c["status"] == "n/a" for c in cs),
                                                          sum(c["status"] == "skip" for c in cs)))
        self.w()
        self.w("| target | side | check | result | detail |")
        self.w("|---|---|---|---|---|")
        for c in cs:
            status = {"pass": "pass", "FAIL": "**FAIL**", "n/a": "n/a", "skip": "skipped"}[c["status"]]
            self.w("| %s | %s | %s | %s | %s |" % (c["target"], c["kind"], c["check"], status,
                                                   (c["detail"] or "").replace("|", "/")[:160]))
        self.w()

    def crypto(self):
        c = self.res["crypto"]
        self.w("## Crypto ceiling (one core)")
        self.w()
        self.w("`openssl speed -evp aes-128-gcm -bytes 16384` on CPU 0: **%s MB/s**%s. No TLS proxy can move more "
               "than this through one core in one direction; a proxy decrypts and re-encrypts only when both sides "
               "are TLS (here the backend side is plain, so one AES-GCM pass per byte)." % (
                   fmt(c.get("aes128gcm_mb_s")),
                   ("; `openssl speed ecdsap256`: %s sign/s, %s verify/s" % (
                       fmt(c["ecdsa_p256_sign_s"]), fmt(c["ecdsa_p256_verify_s"])))
                   if "ecdsa_p256_sign_s" in c else ""))
        self.w()

    def metric_table(self, spec):
        mid = spec["id"]
        targets = self.targets_of(mid)
        if not targets:
            return
        self.w("### %s" % spec["title"])
        self.w()
        per = spec["per"]
        if spec.get("lat"):
            self.w("| target | p50 us | p50 min-max | p99 us | p99 min-max | p99.9 us | server CPU us/%s | "
                   "errors |" % per)
            self.w("|---|---|---|---|---|---|---|---|")
            for t in targets:
                rs = self.recs(mid, t)
                if not rs:
                    self.w("| %s | no result: %s | | | | | | |" % (t, self.failure(mid, t)))
                    continue
                self.w("| %s | %s | %s | %s | %s | %s | %s | %d |" % (
                    self.tname(mid, t), fmt(med([r.get("p50_us") for r in rs])), rng([r.get("p50_us") for r in rs]),
                    fmt(med([r.get("p99_us") for r in rs])), rng([r.get("p99_us") for r in rs]),
                    fmt(med([r.get("p999_us") for r in rs])), fmt(med([r.get("cpu_us_per_op") for r in rs])),
                    sum(r.get("errors", 0) for r in rs)))
        else:
            extra = {"connection": "per server CPU-second", "MB": "MB per server CPU-second"}.get(per)
            self.w("| target | %s (median) | min-max | server CPU us/%s |%s errors |" % (
                spec["unit"], per, (" %s |" % extra) if extra else ""))
            self.w("|---|---|---|---|%s---|" % ("---|" if extra else ""))
            for t in targets:
                rs = self.recs(mid, t)
                if not rs:
                    self.w("| %s | no result: %s | | |%s |" % (t, self.failure(mid, t), " |" if extra else ""))
                    continue
                cpu = med([r.get("cpu_us_per_op") for r in rs])
                self.w("| %s | %s | %s | %s |%s %d |" % (
                    self.tname(mid, t), fmt(med([r["value"] for r in rs])), rng([r["value"] for r in rs]), fmt(cpu),
                    (" %s |" % fmt(1e6 / cpu if cpu else None)) if extra else "",
                    sum(r.get("errors", 0) for r in rs)))
        self.w()
        if mid.startswith("dot_latency"):
            low = []
            for t in targets:
                ach = med([r.get("achieved_qps") for r in self.recs(mid, t)])
                want = self.res["half_rate"] if mid == "dot_latency_half" else self.res["profile"]["dot_rate"]
                if ach is not None and want and ach < 0.95 * want:
                    low.append("%s reached only %s of %s q/s (overloaded: its latency is queueing)" % (
                        t, fmt(ach), fmt(want)))
            for s in low:
                self.w("> %s" % s)
            if low:
                self.w()
        if mid == "proxy_pingpong_c1" and self.recs(mid, "direct"):
            base = self.stat(mid, "direct", "p50_us")
            added = ["%s +%s us" % (t, fmt(self.stat(mid, t, "p50_us") - base)) for t in targets
                     if t != "direct" and self.stat(mid, t, "p50_us") is not None]
            if added:
                self.w("p50 added over plain TCP (direct, %s us): %s." % (fmt(base), ", ".join(added)))
                self.w()
        self.ratios(spec, targets)
        self.plot_for(spec, targets)

    def tname(self, mid, t):
        """The target's name, marked when the load generator was the bottleneck."""
        lag = med([r.get("send_lag_p99_us") for r in self.recs(mid, t)])
        if lag is not None:
            # Open loop: the generator polls (CPU 1 always busy); late sends are what mark it the bottleneck.
            if lag > LATE_US:
                self.client_bound = True
                wait = med([r.get("load_wait_ms") for r in self.recs(mid, t)])
                held = ("; other tasks held its CPU %s ms per run" % fmt(wait)) if wait is not None and wait >= 1 else ""
                return "%s (generator-bound: p99 send lag %s us%s)" % (t, fmt(lag), held)
            return t
        busy = med([r.get("client_busy") for r in self.recs(mid, t)])
        if busy is not None and busy > 0.9:
            self.client_bound = True
            return "%s (client-bound: CPU 1 %.0f%% busy)" % (t, 100 * busy)
        return t

    def failure(self, mid, t):
        errs = [r.get("error", "") for r in self.res["records"] if r["metric"] == mid and r["target"] == t
                and not r.get("ok")]
        return (errs[-1] if errs else "?").replace("|", "/").replace("\n", " ")[:120]

    def ratios(self, spec, targets):
        mid = spec["id"]
        if "ztdns" not in targets or not self.recs(mid, "ztdns"):
            return
        keys = [("p50", "p50_us"), ("p99", "p99_us")] if spec.get("lat") else [(spec["unit"], "value")]
        zc = self.stat(mid, "ztdns", "cpu_us_per_op")
        parts = []
        for t in targets:
            if t in ("ztdns", "ztdns-endpoint", "direct"):  # no TLS peers: what they add is given above
                continue
            figs = []
            for label, key in keys:
                z, v = self.stat(mid, "ztdns", key), self.stat(mid, t, key)
                if z is not None and v:
                    figs.append("%s %.2fx" % (label, z / v))
            c = self.stat(mid, t, "cpu_us_per_op")
            if zc and c:
                figs.append("CPU/op %.2fx" % (zc / c))
            if figs:
                parts.append("%s: %s" % (t, ", ".join(figs)))
        if parts:
            better = "lower is better" if spec["better"] == "lower" else "higher is better"
            self.w("**ztdns / peer** (%s %s; CPU per op: lower is better): %s." % (
                "latency" if spec.get("lat") else spec["unit"], better, "; ".join(parts)))
            self.w()

    def memory(self):
        targets = self.targets_of("proxy_idle_memory")
        if not targets:
            return
        n = self.res["profile"]["idle_n"]
        self.w("### Memory per idle tunnel (%d tunnels, RSS growth of a fresh server process)" % n)
        self.w()
        self.w("Each tunnel did one 64 B round trip, then idles; RSS of every server process before the tunnels "
               "and 1 s after the last was up.")
        self.w()
        self.w("| target | KiB per tunnel (median) | min-max | tunnels up | set-up s |")
        self.w("|---|---|---|---|---|")
        for t in targets:
            rs = self.recs("proxy_idle_memory", t)
            if not rs:
                self.w("| %s | no result: %s | | | |" % (t, self.failure("proxy_idle_memory", t)))
                continue
            self.w("| %s | %s | %s | %s | %s |" % (t, fmt(med([r["value"] for r in rs])),
                                                   rng([r["value"] for r in rs]),
                                                   fmt(med([r.get("established") for r in rs])),
                                                   fmt(med([r.get("setup_s") for r in rs]))))
        self.w()
        if "ztdns" in targets and self.recs("proxy_idle_memory", "ztdns"):
            z = self.stat("proxy_idle_memory", "ztdns", "value")
            parts = ["%s %.2fx" % (t, z / self.stat("proxy_idle_memory", t, "value")) for t in targets
                     if t != "ztdns" and self.stat("proxy_idle_memory", t, "value")]
            if parts:
                self.w("**ztdns / peer** (lower is better): %s." % ", ".join(parts))
                self.w()
        self.bars("idle_memory", "Memory per idle tunnel (KiB, lower is better)", [("KiB/tunnel", "proxy_idle_memory",
                                                                                   "value")], targets)

    def goals(self):
        s = self.stat
        if not any(r["target"] == "ztdns" and r.get("ok") for r in self.res["records"]):
            st = self.res["targets"].get("ztdns", {})
            why = st.get("start") or st.get("dot") or "not measured"
            self.w("## ztdns against its goals")
            self.w()
            self.w("ztdns: %s. The peers above are the yardsticks; ratios and goals appear here as soon as "
                   "`build/dataplane/ztdns-dataplane` exists and passes the checks." % why)
            self.w()
            return
        rows = []

        def goal(name, measured, ok):
            rows.append("| %s | %s | %s |" % (name, measured, "-" if ok is None else ("met" if ok else "**not met**")))

        zq, uq, dq = s("dot_qps", "ztdns", "value"), s("dot_qps", "unbound", "value"), s("dot_qps", "dnsdist", "value")
        if zq:
            goal("DoT q/s >= 2x unbound", "%s vs %s" % (fmt(zq), fmt(uq)), (zq >= 2 * uq) if uq else None)
            goal("DoT q/s >= dnsdist", "%s vs %s" % (fmt(zq), fmt(dq)), (zq >= dq) if dq else None)
        zc = s("dot_qps", "ztdns", "cpu_us_per_op")
        if zc:
            goal("<= 5 us server CPU per query", fmt(zc, "us"), zc <= 5)
        zn = s("dot_newconn", "ztdns", "cpu_us_per_op")
        if zn:
            goal("<= 150 us server CPU per new mTLS connection", fmt(zn, "us"), zn <= 150)
        zh = s("dot_latency_half", "ztdns", "p99_us")
        if zh:
            goal("p99 < 1 ms at half the maximum rate (%s q/s)" % fmt(self.res.get("half_rate")), fmt(zh, "us"),
                 zh < 1000)
        zb, hb = s("proxy_bulk_t1", "ztdns", "value"), s("proxy_bulk_t1", "haproxy", "value")
        if zb:
            goal("bulk (1 tunnel) >= 2x HAProxy", "%s vs %s MB/s" % (fmt(zb), fmt(hb)), (zb >= 2 * hb) if hb else None)
        zhc, hhc = s("proxy_handshake", "ztdns", "cpu_us_per_op"), s("proxy_handshake", "haproxy", "cpu_us_per_op")
        if zhc:
            goal("handshakes per CPU-second >= 5x HAProxy", "%s vs %s" % (fmt(1e6 / zhc), fmt(1e6 / hhc if hhc else None)),
                 (hhc / zhc >= 5) if hhc else None)
        zp, hp, dp = (s("proxy_pingpong_c1", t, "p50_us") for t in ("ztdns", "haproxy", "direct"))
        if zp and dp:
            goal("added p50 over plain TCP <= half of HAProxy's", "+%s vs +%s us" % (
                fmt(zp - dp), fmt(hp - dp if hp else None)), ((zp - dp) <= (hp - dp) / 2) if hp else None)
        zm, hm = s("proxy_idle_memory", "ztdns", "value"), s("proxy_idle_memory", "haproxy", "value")
        if zm:
            goal("memory per idle tunnel <= half of HAProxy's", "%s vs %s KiB" % (fmt(zm), fmt(hm)),
                 (zm <= hm / 2) if hm else None)
        self.w("## ztdns against its goals (issues 3 and 4), this run")
        self.w()
        self.w("| goal | measured (ztdns vs peer) | |")
        self.w("|---|---|---|")
        for r in rows:
            self.w(r)
        self.w()

    def endpoint(self):
        """Issue 5: what ztdns-endpoint + the proxy add to a request/response over plain TCP, next to what the
        proxy alone adds, and one tunnel's bulk rate with the CPU of the data plane and of the endpoint."""
        e, z, d = "ztdns-endpoint", "ztdns", "direct"
        if not (self.recs("proxy_pingpong_c1", e) or self.recs("proxy_bulk_t1", e)):
            return
        s = self.stat
        cols = [(d, "direct (plain TCP)"), (z, "ztdns proxy alone (mTLS from the client)"),
                (e, "ztdns-endpoint + ztdns proxy (plain TCP into the endpoint)")]
        self.w("## ztdns-endpoint + proxy vs direct (issue 5)")
        self.w()
        self.w("The application (the load generator, `zt-proxyload --plain`) connects in plain TCP to the tunnel "
               "address that the endpoint's DNS stub answered; the endpoint (CPU 1, with the load generator and "
               "backends) carries the connection in mTLS to the data plane (CPU 0), which connects to the backend. "
               "Medians over the repetitions; server CPU is the data plane's (zt-echo's for direct), endpoint CPU "
               "is ztdns-endpoint's, both per operation of the measured window.")
        self.w()
        self.w("| | " + " | ".join(title for _, title in cols) + " | endpoint + proxy minus direct |")
        self.w("|---|" + "---|" * (len(cols) + 1))

        def row(label, metric, key, diff=True):
            vals = [s(metric, t, key) for t, _ in cols]
            added = "+" + fmt(vals[2] - vals[0]) if diff and vals[0] is not None and vals[2] is not None else ""
            self.w("| %s | %s | %s |" % (label, " | ".join(fmt(v) for v in vals), added))

        row("64 B ping-pong, 1 tunnel: p50 us", "proxy_pingpong_c1", "p50_us")
        row("64 B ping-pong, 1 tunnel: p99 us", "proxy_pingpong_c1", "p99_us")
        row("server CPU us per round trip", "proxy_pingpong_c1", "cpu_us_per_op", diff=False)
        row("endpoint CPU us per round trip", "proxy_pingpong_c1", "endpoint_cpu_us_per_op", diff=False)
        row("bulk download, 1 tunnel: MB/s", "proxy_bulk_t1", "value", diff=False)
        row("server CPU us per MB", "proxy_bulk_t1", "cpu_us_per_op", diff=False)
        row("endpoint CPU us per MB", "proxy_bulk_t1", "endpoint_cpu_us_per_op", diff=False)
        self.w()
        ze, zz, zd = (s("proxy_pingpong_c1", t, "p50_us") for t in (e, z, d))
        if ze is not None and zd is not None:
            self.w("Added p50 latency over direct: endpoint + proxy **+%s us**%s." % (
                fmt(ze - zd), (", proxy alone +%s us: the endpoint's own share is +%s us" % (
                    fmt(zz - zd), fmt(ze - zz))) if zz is not None else ""))
            self.w()
        busy = med([r.get("client_busy") for r in self.recs("proxy_bulk_t1", e)])
        if busy is not None and busy > 0.9:
            self.w("> The endpoint shares CPU 1 with the load generator and the backends, which was %.0f%% busy "
                   "during its bulk runs: that rate is CPU 1's limit; compare the CPU per MB." % (100 * busy))
            self.w()

    def summary(self, specs):
        """One table, metrics x targets, medians: what bench/README.md quotes."""
        cols = [t for t in self.order if any(r["target"] == t and r.get("ok") for r in self.res["records"])]
        if not cols:
            return
        self.w("## Summary (medians; server CPU per operation in brackets)")
        self.w()
        self.w("| metric | " + " | ".join(cols) + " |")
        self.w("|---|" + "---|" * len(cols))
        for spec in specs + [dict(id="proxy_idle_memory", title="memory per idle tunnel (KiB)", unit="KiB")]:
            mid = spec["id"]
            if not any(self.recs(mid, t) for t in cols):
                continue
            cells = []
            for t in cols:
                if not self.recs(mid, t):
                    cells.append("")
                    continue
                if spec.get("lat"):
                    cell = "p50 %s / p99 %s us" % (fmt(self.stat(mid, t, "p50_us")), fmt(self.stat(mid, t, "p99_us")))
                else:
                    cell = fmt(self.stat(mid, t, "value"))
                cpu = self.stat(mid, t, "cpu_us_per_op")
                if cpu is not None and mid != "proxy_idle_memory":
                    cell += " (%s us)" % fmt(cpu)
                cells.append(cell)
            name = spec["title"] if mid in ("proxy_idle_memory",) else "%s [%s]" % (
                spec["title"], "us" if spec.get("lat") else spec["unit"])
            self.w("| %s | %s |" % (name, " | ".join(cells)))
        self.w()

    def micro(self):
        ms = self.res["micro"]
        if not ms:
            return
        self.w("## Micro-benchmarks (`--micro`: build/bench/*_bench, Google Benchmark, CPU 0)")
        self.w()
        self.w("CPU time per iteration, except for `manual_time` benchmarks, which time only part of an iteration "
               "themselves (tls_bench: the server's side of a handshake whose client runs in the same thread): "
               "their figure is that time.")
        self.w()
        self.w("| binary | benchmark | time | items/s | bytes/s |")
        self.w("|---|---|---|---|---|")
        for m in ms:
            if "error" in m:
                self.w("| %s | failed: %s | | | |" % (m["binary"], m["error"]))
                continue
            t = m["real_time"] if m["name"].endswith("/manual_time") else m["cpu_time"]
            self.w("| %s | `%s` | %s %s | %s | %s |" % (m["binary"], m["name"], fmt(t), m["time_unit"],
                                                       fmt(m.get("items_per_second")), fmt(m.get("bytes_per_second"))))
        self.w()

    # ---- plots -----------------------------------------------------------------------------------------------------

    def plot_for(self, spec, targets):
        mid = spec["id"]
        if spec.get("lat"):
            self.curves(mid, spec["title"], targets)
        elif mid == "proxy_handshake":
            series = [("ECDSA P-256", "proxy_handshake", "value")]
            if self.targets_of("proxy_handshake_rsa"):
                series.append(("RSA 4096", "proxy_handshake_rsa", "value"))
            tls_targets = [t for t in targets if t != "direct"]  # direct has no TLS handshake
            self.bars("proxy_handshake", "Proxy handshakes/s (one server core)", series, tls_targets)
            series = [("ECDSA P-256", "proxy_handshake", "cpu_us_per_op")]
            if self.targets_of("proxy_handshake_rsa"):
                series.append(("RSA 4096", "proxy_handshake_rsa", "cpu_us_per_op"))
            self.bars("proxy_handshake_cpu", "Server CPU per proxy handshake (us, lower is better)", series,
                      tls_targets)
        elif mid == "proxy_bulk_t1":
            series = [("1 tunnel", "proxy_bulk_t1", "value")]
            if self.targets_of("proxy_bulk_t8"):
                series.append(("8 tunnels", "proxy_bulk_t8", "value"))
            self.bars("proxy_bulk", "Bulk download through the proxy (MB/s)", series, targets)
        elif mid in ("dot_qps", "dot_newconn"):
            self.bars(mid, spec["title"], [(spec["unit"], mid, "value")], targets)
            self.bars(mid + "_cpu", "Server CPU per %s (us, lower is better): %s" % (spec["per"], spec["title"]),
                      [("us/" + spec["per"], mid, "cpu_us_per_op")], targets)

    def gnuplot(self, name, script):
        png = os.path.join(self.out, name + ".png")
        gp = os.path.join(self.plot_dir, name + ".gp")
        with open(gp, "w") as f:
            f.write('set terminal pngcairo size 900,480 font "DejaVu Sans,10"\nset output "%s"\n' % png)
            f.write(script)
        r = subprocess.run(["gnuplot", gp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode == 0 and os.path.exists(png):
            self.w("![%s](%s.png)" % (name, name))
            self.w()
            self.plots.append(png)
        else:
            self.w("(plot %s failed: %s)" % (name, r.stdout.decode(errors="replace").strip()[:200]))
            self.w()

    def bars(self, name, title, series, targets):
        """Clustered bars: one cluster per target, one bar per series; error bars span min-max."""
        rows = []
        for t in targets:
            cols = []
            for _, metric, key in series:
                xs = [r.get(key) for r in self.recs(metric, t) if r.get(key) is not None]
                if xs:
                    cols += [statistics.median(xs), min(xs), max(xs)]
                else:
                    cols += ["NaN", "NaN", "NaN"]
            rows.append((t, cols))
        if not any(c != "NaN" for _, cols in rows for c in cols):
            return
        dat = os.path.join(self.plot_dir, name + ".dat")
        with open(dat, "w") as f:
            for t, cols in rows:
                f.write('"%s" %s\n' % (t, " ".join(str(c) for c in cols)))
        plots = []
        for i, (label, _, _) in enumerate(series):
            c = 2 + 3 * i
            xt = ":xtic(1)" if i == 0 else ""
            plots.append('"%s" using %d:%d:%d%s title "%s"' % (dat, c, c + 1, c + 2, xt, label))
        script = ('set title "%s"\nset style data histogram\nset style histogram errorbars gap 2 lw 1\n'
                  'set style fill solid 0.8 border -1\nset boxwidth 0.9\nset yrange [0:*]\nset grid ytics\n'
                  'set key top right\nplot %s\n') % (title.replace('"', "'"), ", ".join(plots))
        self.gnuplot(name, script)

    def curves(self, name, title, targets):
        """Latency percentile curves (the repetition with the median p99), x in 'nines'."""
        plots = []
        for t in targets:
            rs = sorted((r for r in self.recs(name, t) if r.get("percentiles")), key=lambda r: r.get("p99_us", 0))
            if not rs:
                continue
            pts = rs[len(rs) // 2]["percentiles"]
            dat = os.path.join(self.plot_dir, "%s-%s.dat" % (name, t))
            with open(dat, "w") as f:
                for q, us in pts:
                    if 0 < q < 100 and us > 0:
                        f.write("%g %g\n" % (-math.log10(1 - q / 100.0), us))
            plots.append('"%s" using 1:2 with linespoints title "%s"' % (dat, t))
        if not plots:
            return
        script = ('set title "%s"\nset logscale y\nset grid\nset xlabel "percentile"\nset ylabel "latency (us)"\n'
                  'set xtics ("50" 0.30103, "90" 1, "99" 2, "99.9" 3, "99.99" 4)\nset xrange [0:4.2]\n'
                  'set key top left\nplot %s\n') % (title.replace('"', "'"), ", ".join(plots))
        self.gnuplot(name, script)

    # ---- all -------------------------------------------------------------------------------------------------------

    def write(self):
        self.header()
        self.checks()
        self.crypto()
        specs = list(self.res["specs"])
        # After the fixed-rate latency, or after dot_qps when --metrics left it
        # out (results.json before half_spec: only with dot_latency).
        ids = [s["id"] for s in specs]
        base = self.res.get("half_spec") or next((s for s in specs if s["id"] == "dot_latency"), None)
        if self.res.get("half_rate") and base:
            i = ids.index("dot_latency") if "dot_latency" in ids else ids.index("dot_qps")
            half = dict(base, id="dot_latency_half",
                        title="ztdns DoT latency at half its maximum rate (%s q/s, open loop)" %
                              fmt(self.res["half_rate"]))
            specs.insert(i + 1, half)
        self.summary(specs)
        self.goals()
        self.endpoint()
        self.w("## Results")
        self.w()
        for spec in specs:
            self.metric_table(spec)
        self.memory()
        self.micro()
        self.w("## Reference figures (issues 3 and 4)")
        self.w()
        self.w(REFERENCE)
        self.w("## Files")
        self.w()
        self.w("`raw.jsonl` (every line the load generators printed, with target/metric/rep), `results.json` "
               "(every run, the checks, the machine), `checks.json`, `plot-data/` (gnuplot scripts and data), "
               "`work/` (generated configs, certificates and each server's log).")
        self.w()
        with open(os.path.join(self.out, "report.md"), "w") as f:
            f.write("\n".join(self.lines))
        return self.plots


def write(out, results):
    return Report(out, results).write()
