"""bench/run: the side-by-side benchmark, one command from nothing to report.md.

Sets up certificates, backends and every target on loopback, checks that each
target answers the authorized client and refuses the unauthorized one, then
runs each metric several times interleaving the targets (A B C A B C ...),
pinning the server under test to CPU 0 and the load generator and backends to
CPU 1, and samples the server's CPU time (utime + stime from /proc/PID/stat)
exactly around each measured window. Writes report.md, PNG plots, results.json
and raw.jsonl (every line the load generators printed).
"""

import argparse
import datetime
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

import peers
import procs
import report

PROFILES = {
    # reps: repetitions of every metric; duration/warmup: seconds per run
    "smoke": dict(reps=1, duration=1.0, warmup=0.2, idle_n=50, idle_reps=1, dot_rate=2000, speed_s=1,
                  micro_min_time=0.01, rsa=False, extra=False),
    "quick": dict(reps=2, duration=2.0, warmup=0.3, idle_n=1000, idle_reps=1, dot_rate=20000, speed_s=1,
                  micro_min_time=0.05, rsa=True, extra=True),
    "full": dict(reps=5, duration=5.0, warmup=1.0, idle_n=8000, idle_reps=3, dot_rate=20000, speed_s=3,
                 micro_min_time=0.5, rsa=True, extra=True),
}

SERVER_CPU, CLIENT_CPU = "0", "1"
WAIT_NOTE_MS = 2  # the polling load generator's run-queue wait worth naming in a repetition's line


def metric_specs(prof):
    """Every metric: which targets (dot / proxy), load generator arguments, what to read back."""
    rate = prof["dot_rate"]
    specs = [
        dict(id="dot_qps", cls="dot", tool="dot", line="dot_qps", unit="q/s", better="higher", per="query",
             ops="queries", title="DoT queries/s, 4 persistent connections x 32 queries in flight",
             args=["--mode", "pipeline", "--connections", "4", "--inflight", "32"]),
        dict(id="dot_latency", cls="dot", tool="dot", line="dot_latency", lat=True, unit="us", better="lower",
             per="query", ops="queries", ops_line="dot_qps",
             title="DoT latency at a fixed %d queries/s (open loop, 4 connections)" % rate,
             args=["--rate", str(rate), "--connections", "4"]),
        dict(id="dot_newconn", cls="dot", tool="dot", line="dot_newconn", unit="conn/s", better="higher",
             per="connection", ops="completed",
             title="DoT new connections/s (TCP + mTLS handshake + 1 query + close), 32 at a time",
             args=["--mode", "newconn", "--connections", "32"]),
        dict(id="proxy_handshake", cls="proxy", tool="proxy", service="echo", line="proxy_handshake",
             unit="conn/s", better="higher", per="connection", ops="completed",
             title="Proxy handshakes/s (connect + mTLS + 64 B round trip + close), ECDSA P-256, 32 at a time",
             args=["--mode", "handshake", "--connections", "32", "--size", "64"]),
        dict(id="proxy_handshake_rsa", cls="proxy", rsa=True, tool="proxy", service="echo", line="proxy_handshake",
             unit="conn/s", better="higher", per="connection", ops="completed",
             title="Proxy handshakes/s, RSA 4096 server key, 32 at a time",
             args=["--mode", "handshake", "--connections", "32", "--size", "64"]),
        dict(id="proxy_pingpong_c1", cls="proxy", tool="proxy", service="echo", line="proxy_pingpong_latency",
             lat=True, unit="us", better="lower", per="round trip", ops="completed", ops_line="proxy_pingpong_rps",
             title="Proxy 64 B ping-pong latency, 1 tunnel",
             args=["--mode", "pingpong", "--connections", "1", "--size", "64"]),
        dict(id="proxy_pingpong_c64", cls="proxy", tool="proxy", service="echo", line="proxy_pingpong_latency",
             lat=True, unit="us", better="lower", per="round trip", ops="completed", ops_line="proxy_pingpong_rps",
             title="Proxy 64 B ping-pong latency, 64 tunnels",
             args=["--mode", "pingpong", "--connections", "64", "--size", "64"]),
        dict(id="proxy_bulk_t1", cls="proxy", tool="proxy", service="source", line="proxy_bulk", unit="MB/s",
             better="higher", per="MB", ops="bytes", ops_scale=1e-6,
             title="Proxy bulk download, 1 tunnel (backend -> proxy -> client)",
             args=["--mode", "bulk", "--connections", "1"]),
        dict(id="proxy_bulk_t8", cls="proxy", tool="proxy", service="source", line="proxy_bulk", unit="MB/s",
             better="higher", per="MB", ops="bytes", ops_scale=1e-6,
             title="Proxy bulk download, 8 tunnels",
             args=["--mode", "bulk", "--connections", "8"]),
    ]
    if not prof["rsa"]:
        specs = [s for s in specs if not s.get("rsa")]
    if not prof["extra"]:
        specs = [s for s in specs if s["id"] not in ("proxy_pingpong_c64", "proxy_bulk_t8")]
    return specs


def damon_summary():
    """The kernel's DAMON monitors that are running (a kdamond thread takes a CPU at every sample), or ""."""
    def read(*parts):
        with open(os.path.join(*parts)) as f:
            return f.read().strip()
    base = "/sys/kernel/mm/damon/admin/kdamonds"
    try:
        n = int(read(base, "nr_kdamonds"))
    except (OSError, ValueError):
        return ""
    out = []
    for k in range(n):
        d = os.path.join(base, str(k))
        try:
            if read(d, "state") != "on":
                continue
            ops = read(d, "contexts", "0", "operations")
            us = int(read(d, "contexts", "0", "monitoring_attrs", "intervals", "sample_us"))
            out.append("kdamond %d (%s, samples every %g ms)" % (k, ops, us / 1000))
        except (OSError, ValueError):
            out.append("kdamond %d" % k)
    return ", ".join(out)


class Ctx:
    """What the targets need from the harness."""


def log(msg=""):
    print(msg, flush=True)


def median(xs):
    return statistics.median(xs) if xs else None


class Harness:
    def __init__(self, opts):
        self.opts = opts
        self.profile_name = "smoke" if opts.smoke else "quick" if opts.quick else "full"
        self.prof = dict(PROFILES[self.profile_name])
        if opts.reps:
            self.prof["reps"] = opts.reps
        if opts.duration:
            self.prof["duration"] = opts.duration
        if opts.idle_tunnels:
            self.prof["idle_n"] = opts.idle_tunnels
        if opts.dot_rate:
            self.prof["dot_rate"] = opts.dot_rate
        self.repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        build = os.environ.get("ZT_BUILD", "build")
        self.build = build if os.path.isabs(build) else os.path.join(self.repo, build)
        stamp = datetime.datetime.utcnow().strftime("%Y%m%d-%H%M%S")
        base = os.environ.get("TMPDIR", "/tmp")
        self.out = os.path.abspath(opts.out or os.path.join(base, "ztdns-bench", stamp))
        self.work = os.path.join(self.out, "work")
        os.makedirs(self.work, exist_ok=True)
        self.procs = procs.Procs(self.work)
        self.records = []     # one per measured run
        self.checks = []      # correctness checks
        self.target_status = {}  # name -> {"dot": reason or None, "proxy": ..., "start": ...}
        self.raw = open(os.path.join(self.out, "raw.jsonl"), "w")
        self.machine = {}
        self.crypto = {}
        self.micro = []
        self.notes = []
        self.started = time.time()

    # ---- set-up ----------------------------------------------------------------------------------------------------

    def bin(self, name):
        return os.path.join(self.build, "bench", "load", name)

    def ensure_tools(self):
        names = ["zt-dotload", "zt-proxyload", "zt-echo"]
        missing = [n for n in names if not os.access(self.bin(n), os.X_OK)]
        if missing and os.path.exists(os.path.join(self.build, "build.ninja")):
            log("building %s in %s" % (", ".join(missing), self.build))
            subprocess.run(["ninja", "-C", self.build] + ["bench/load/" + n for n in names],
                           stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            missing = [n for n in names if not os.access(self.bin(n), os.X_OK)]
        if missing:
            sys.exit("bench/run: %s not built in %s; build them with\n  ninja -C %s %s" % (
                ", ".join(missing), self.build, self.build, " ".join("bench/load/" + n for n in names)))

    def record_machine(self):
        m = self.machine
        cpu = "?"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        m["cpu"] = cpu
        m["cores"] = os.cpu_count()
        m["kernel"] = os.uname().release
        with open("/proc/meminfo") as f:
            m["memory"] = f.readline().split(":", 1)[1].strip()
        m["ktls"] = "tls" in procs.run_text(["cat", "/proc/sys/net/ipv4/tcp_available_ulp"]).split()
        m["tcp_cc"] = procs.run_text(["cat", "/proc/sys/net/ipv4/tcp_congestion_control"]).strip()
        m["damon"] = damon_summary()
        m["loadavg_start"] = open("/proc/loadavg").read().split()[:3]
        m["busy_before"] = busy_fraction(1.0)
        m["date"] = datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")
        m["command"] = " ".join(["bench/run"] + sys.argv[1:])
        m["profile"] = self.profile_name
        m["wolfssl"] = "?"
        pc = os.path.join(self.repo, ".deps", "wolfssl", "lib", "pkgconfig", "wolfssl.pc")
        if os.path.exists(pc):
            for line in open(pc):
                if line.startswith("Version:"):
                    m["wolfssl"] = "wolfSSL " + line.split(":", 1)[1].strip() + " (scripts/setup build, AES-NI)"
        m["openssl"] = procs.run_text(["openssl", "version"]).strip()
        m["gnuplot"] = procs.run_text(["gnuplot", "--version"]).strip()

    def start_backends(self):
        ports = {s: procs.free_port() for s in peers.SERVICES}
        argv = [self.bin("zt-echo")] + sum((["--" + s, "127.0.0.1:%d" % p] for s, p in ports.items()), [])
        p = self.procs.start("zt-echo", argv, cpu=CLIENT_CPU)
        for port in ports.values():
            if not procs.wait_port(port, 10, p):
                sys.exit("bench/run: zt-echo did not start: " + procs.tail(os.path.join(self.work, "zt-echo.log")))
        self.echo_proc = p
        return ports

    def start_targets(self, names):
        ctx = Ctx()
        ctx.work, ctx.procs, ctx.build, ctx.repo = self.work, self.procs, self.build, self.repo
        ctx.server_cpu, ctx.client_cpu = SERVER_CPU, CLIENT_CPU
        ctx.echo_bin = self.bin("zt-echo")
        log("certificates (CA, ECDSA P-256 server%s, authorized and unauthorized clients)" %
            (", RSA 4096 server" if self.prof["rsa"] else ""))
        ctx.certs = peers.Certs(os.path.join(self.work, "certs"))
        ctx.certs.make(rsa=True)  # nginx/HAProxy configs name the RSA certificate in every profile
        ctx.backend_ports = self.start_backends()
        ctx.dead_port = procs.free_port()  # nothing listens there: an upstream that never leaves loopback
        ctx.want_rsa = self.prof["rsa"]
        self.ctx = ctx
        self.targets = []
        for name in names:
            t = peers.ALL[name](ctx)
            st = {"start": None, "dot": None, "proxy": None, "version": "?", "affinity": None}
            self.target_status[name] = st
            try:
                st["version"] = t.version()
            except Exception as e:  # noqa: BLE001 - a version string is never worth failing for
                st["version"] = "? (%s)" % e
            try:
                t.start()
                if t.pids():
                    aff = procs.affinities(t.pids())
                    st["affinity"] = ",".join(sorted(aff))
                    if aff - {SERVER_CPU}:
                        self.notes.append("%s: some server threads may run outside CPU %s (Cpus_allowed_list %s)" %
                                          (name, SERVER_CPU, st["affinity"]))
                log("started %-8s %s" % (name, t.dot_addr or t.proxy_addr or ""))
            except peers.Unavailable as e:
                st["start"] = str(e)
                log("%s: %s" % (name, e))
                if name == "ztdns" and "not built yet" in str(e):
                    log("ztdns: not built yet")
            except Exception as e:  # noqa: BLE001 - one broken peer must not stop the others
                st["start"] = "failed to start: %s" % e
                log("%s: failed to start: %s" % (name, e))
            self.targets.append(t)

    # ---- running the load generators ---------------------------------------------------------------------------

    def run_load(self, tool, args, pids_fn, timeout, context, endpoint_pids_fn=lambda: []):
        """Runs a load generator on CPU 1; server CPU (and a client-side endpoint's, kept in
        self.last_endpoint_cpu) sampled at its measure_start/measure_end events."""
        binary = self.bin("zt-dotload" if tool == "dot" else "zt-proxyload")
        argv = ["taskset", "-c", CLIENT_CPU, binary] + args
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             start_new_session=True, text=True,
                             preexec_fn=procs.die_with_parent)
        self.procs.started.append(("load", p))
        self.procs.note(p, argv)
        killer = threading.Timer(timeout, lambda: _killpg(p))
        killer.start()
        lines, cpu0, cpu1, stat0, stat1, ep0, ep1 = [], None, None, None, None, None, None
        wait0 = wait1 = None
        pids, ep_pids = pids_fn(), endpoint_pids_fn()
        try:
            for raw in p.stdout:
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                ev = obj.get("event")
                if ev == "measure_start":
                    cpu0, ep0, stat0 = procs.cpu_seconds(pids), procs.cpu_seconds(ep_pids), procs.cpu_times()
                    wait0 = (procs.run_delays([p.pid]), procs.run_delays(pids))
                elif ev == "measure_end":
                    cpu1, ep1, stat1 = procs.cpu_seconds(pids), procs.cpu_seconds(ep_pids), procs.cpu_times()
                    wait1 = (procs.run_delays([p.pid]), procs.run_delays(pids))
                obj.update(context)
                self.raw.write(json.dumps(obj) + "\n")
                if ev is None:
                    lines.append(obj)
            err = p.stderr.read()
            p.wait()
            if err.strip():
                with open(os.path.join(self.work, "load-stderr.log"), "a") as f:
                    f.write("== %s\n%s\n" % (" ".join(argv), err))
        finally:
            killer.cancel()
            self.procs.started = [(n, q) for (n, q) in self.procs.started if q is not p]
        self.raw.flush()
        cpu = (cpu1 - cpu0) if (cpu0 is not None and cpu1 is not None and pids) else None
        self.last_endpoint_cpu = (ep1 - ep0) if (ep0 is not None and ep1 is not None and ep_pids) else None
        self.last_busy = procs.busy_between(stat0, stat1) if cpu1 is not None else {}
        self.last_irq = procs.irq_between(stat0, stat1) if cpu1 is not None else {}
        # Run-queue wait of the load generator and of the server during the window (schedstat: runnable,
        # not running). For a thread that polls it is time other tasks took; for one that sleeps it also
        # counts every wake-up's delay.
        self.last_wait = tuple(procs.run_delay_ms_between(a, b) for a, b in zip(wait0, wait1)) \
            if wait0 and wait1 else None
        return lines, cpu, p.returncode, err.strip()[-500:]

    def loader_args(self, t, spec_tool, service=None, which="ok", rsa=False):
        """Connection arguments of a target for one kind of load."""
        if spec_tool == "dot":
            ca, cert, key = t.creds(which)
            a = ["--server", t.dot_addr, "--ca", ca, "--name", "echo.bench.test"]
        else:
            if t.plain:
                return ["--server", t.backend_addr(service), "--plain"]
            ca, cert, key = t.creds(which, rsa=rsa)
            a = ["--server", t.proxy_rsa_addr if rsa else t.proxy_addr, "--ca", ca,
                 "--sni", "%s.bench.test" % service]
        a += ["--cert", cert, "--key", key] if cert else ["--no-client-cert"]
        return a

    # ---- correctness ---------------------------------------------------------------------------------------------

    def check(self, t, kind, desc, status, detail):
        detail = " / ".join(x.strip() for x in (detail or "").splitlines() if x.strip())
        self.checks.append(dict(target=t.name, kind=kind, check=desc, status=status, detail=detail))
        log("check %-8s %-5s %-44s %s%s" % (t.name, kind, desc, status, (" (%s)" % detail) if detail else ""))

    def one_check(self, t, tool, which, service="echo", rsa=False, name=None):
        args = self.loader_args(t, tool, service=service, which=which, rsa=rsa) + ["--mode", "check",
                                                                                  "--timeout", "3"]
        if name:
            args += ["--name", name]  # the last --name wins
        lines, _, rc, err = self.run_load(tool, args, lambda: [], 30, dict(target=t.name, check=which))
        return lines[0] if lines else {"result": "no output", "detail": err or "exit %s" % rc}

    def run_checks(self):
        log("\n== correctness checks (before any measurement)")
        for t in self.targets:
            st = self.target_status[t.name]
            if st["start"]:
                for kind in (["dot"] if t.dot else []) + (["proxy"] if t.proxy else []):
                    st[kind] = st["start"]
                    self.check(t, kind, "target runs", "skip", st["start"])
                continue
            if t.dot:
                st["dot"] = self.dot_checks(t)
            if t.proxy:
                if t.proxy_status:
                    st["proxy"] = t.proxy_status
                    self.check(t, "proxy", "proxy service", "skip", t.proxy_status)
                else:
                    st["proxy"] = self.proxy_checks(t)

    def dot_checks(self, t):
        bad = None
        r = self.one_check(t, "dot", "ok")
        ok = r.get("result") == "answer" and r.get("answer") == peers.ANSWER
        detail = "%s %s" % (r.get("rcode", r.get("result")), r.get("answer") or r.get("detail", ""))
        self.check(t, "dot", "authorized client gets %s" % peers.ANSWER, "pass" if ok else "FAIL", detail.strip())
        if not ok:
            bad = "authorized client not answered (%s)" % detail.strip()
        r = self.one_check(t, "dot", "bad")
        refused = r.get("result") in ("closed", "handshake_failed") or r.get("rcode") in ("NXDOMAIN", "REFUSED")
        detail = "%s %s" % (r.get("rcode", r.get("result")), r.get("answer") or r.get("detail", ""))
        if t.cn_filter:
            # No existence leak: the unauthorized CN must get what a name that does not exist gets.
            ref = self.one_check(t, "dot", "ok", name="nonexistent.bench.test")
            if r.get("rcode") and ref.get("rcode"):
                refused = refused and r.get("rcode") == ref.get("rcode") and not r.get("answer")
                detail += " (a name that does not exist: %s)" % ref.get("rcode")
            self.check(t, "dot", "unauthorized CN refused (as a name that does not exist)",
                       "pass" if refused else "FAIL", detail.strip())
            if not refused:
                bad = bad or "unauthorized CN answered (%s)" % detail.strip()
        else:
            self.check(t, "dot", "unauthorized CN refused", "n/a",
                       "cannot filter by CN: %s" % ("answered" if not refused else detail.strip()))
        r = self.one_check(t, "dot", "none")
        refused = r.get("result") in ("closed", "handshake_failed") or r.get("rcode") == "REFUSED"
        detail = "%s %s" % (r.get("rcode", r.get("result")), r.get("answer") or r.get("detail", ""))
        if t.requires_cert:
            self.check(t, "dot", "no client certificate refused", "pass" if refused else "FAIL", detail.strip())
            if not refused:
                bad = bad or "client without a certificate answered"
        else:
            self.check(t, "dot", "no client certificate refused", "n/a",
                       "does not ask for one: %s" % ("answered" if not refused else detail.strip()))
        return bad

    def proxy_checks(self, t):
        bad = None
        variants = [(False, "ECDSA")] + ([(True, "RSA 4096")] if t.rsa and t.proxy_rsa_addr else [])
        for rsa, label in variants:
            r = self.one_check(t, "proxy", "ok", rsa=rsa)
            ok = r.get("result") == "ok"
            name = "authorized tunnel echoes 64 B" + ("" if t.plain else " (%s)" % label)
            self.check(t, "proxy", name, "pass" if ok else "FAIL", "" if ok else r.get("detail", r.get("result")))
            if not ok:
                bad = bad or "authorized tunnel failed (%s): %s" % (label, r.get("detail", r.get("result")))
        if t.plain:
            return bad
        for which, desc in (("bad", "unauthorized CN refused"), ("none", "no client certificate refused")):
            r = self.one_check(t, "proxy", which)
            refused = r.get("result") == "refused"
            self.check(t, "proxy", desc, "pass" if refused else "FAIL", r.get("detail") or r.get("result"))
            if not refused:
                bad = bad or "%s: not refused" % desc
        r = self.one_check(t, "proxy", "ok", service="nope")
        refused = r.get("result") == "refused"
        self.check(t, "proxy", "unknown SNI name refused", "pass" if refused else "FAIL",
                   r.get("detail") or r.get("result"))
        if not refused:
            bad = bad or "unknown SNI name not refused"
        return bad

    # ---- measurements ----------------------------------------------------------------------------------------------

    def eligible(self, spec, t):
        st = self.target_status[t.name]
        if spec["cls"] == "dot":
            return t.dot and not st["dot"]
        if not t.proxy or st["proxy"]:
            return False
        if t.metrics is not None and spec["id"] not in t.metrics:
            return False
        if spec.get("rsa"):
            return t.rsa and t.proxy_rsa_addr is not None
        return True

    def measure(self, spec, t, rep, extra_args=None, metric_id=None):
        prof = self.prof
        mid = metric_id or spec["id"]
        args = self.loader_args(t, spec["tool"], service=spec.get("service"), rsa=spec.get("rsa", False))
        if spec["tool"] == "dot":
            args += ["--expect", peers.ANSWER]  # every answer is checked: rcode, ID and the address
        args += spec["args"] + (extra_args or []) + ["--duration", str(prof["duration"]),
                                                     "--warmup", str(prof["warmup"]), "--label", t.name]
        timeout = prof["duration"] + prof["warmup"] + 40
        rsa = spec.get("rsa", False)
        lines, cpu, rc, err = self.run_load(spec["tool"], args, lambda: t.pids(rsa=rsa), timeout,
                                            dict(target=t.name, metric_id=mid, rep=rep), t.endpoint_pids)
        by = {l.get("metric"): l for l in lines}
        main = by.get(spec["line"])
        rec = dict(metric=mid, target=t.name, rep=rep, ok=main is not None)
        if main is None:
            rec["error"] = err or "load generator exited %s with no result" % rc
            log("  %-8s %-20s rep %d: no result (%s)" % (t.name, mid, rep, rec["error"][-200:]))
            self.records.append(rec)
            return rec
        ops_line = by.get(spec.get("ops_line", spec["line"]), {})
        ops = ops_line.get(spec["ops"], 0) * spec.get("ops_scale", 1)
        rec.update(value=main.get("value"), errors=main.get("errors", 0), first_error=main.get("first_error"),
                   cipher=main.get("cipher"), ops=ops, duration=main.get("duration_s"))
        if main.get("client_cpu_s") is not None and main.get("duration_s"):
            rec["client_cpu_share"] = main["client_cpu_s"] / main["duration_s"]
        if self.last_wait:
            rec["load_wait_ms"], rec["server_wait_ms"] = (round(x, 1) for x in self.last_wait)
        busy = self.last_busy
        if busy:
            # CPU 1 (load generator + backends) saturated: the figure is the client side's limit, not the server's.
            rec["client_busy"] = busy.get(int(CLIENT_CPU), 0)
            rec["cpu0_busy"] = busy.get(int(SERVER_CPU), 0)
            rec["cpu0_irq"] = self.last_irq.get(int(SERVER_CPU), 0)
            if cpu is not None and main.get("duration_s"):
                # What else ran on the server's core during the window: other processes of a shared machine
                # (interrupt and softirq time, such as loopback delivery, is counted apart).
                rec["cpu0_other"] = max(0.0, rec["cpu0_busy"] - rec["cpu0_irq"] - cpu / main["duration_s"])
        companion = {"dot_qps": "dot_latency", "dot_newconn": "dot_newconn_latency",
                     "proxy_handshake": "proxy_handshake_latency"}.get(spec["line"], "")
        lat = main if spec.get("lat") else by.get(companion, {})
        for k in ("p50_us", "p90_us", "p99_us", "p999_us", "max_us", "achieved_qps", "send_lag_p99_us"):
            if k in lat:
                rec[k] = lat[k]
        if "percentiles" in lat:
            rec["percentiles"] = lat["percentiles"]
        if cpu is not None and ops:
            rec["cpu_s"] = cpu
            rec["cpu_us_per_op"] = cpu * 1e6 / ops
        if self.last_endpoint_cpu is not None and ops:
            rec["endpoint_cpu_s"] = self.last_endpoint_cpu
            rec["endpoint_cpu_us_per_op"] = self.last_endpoint_cpu * 1e6 / ops
        self.records.append(rec)
        shown = ("p50 %.1f us, p99 %.1f us" % (rec.get("p50_us", 0), rec.get("p99_us", 0))) if spec.get("lat") \
            else "%s %s" % (fmt_num(rec["value"]), spec["unit"])
        cpu_txt = (", server CPU %.2f us/%s" % (rec["cpu_us_per_op"], spec["per"])) if "cpu_us_per_op" in rec else ""
        if "endpoint_cpu_us_per_op" in rec:
            cpu_txt += ", endpoint CPU %.2f us/%s" % (rec["endpoint_cpu_us_per_op"], spec["per"])
        err_txt = (", %d errors (%s)" % (rec["errors"], rec.get("first_error"))) if rec["errors"] else ""
        if "send_lag_p99_us" in rec:
            # Open loop: the generator polls, so CPU 1 is always busy; how late queries left is what tells.
            if rec["send_lag_p99_us"] > report.LATE_US:
                err_txt += ", load generator late (p99 send lag %.0f us)" % rec["send_lag_p99_us"]
        elif rec.get("client_busy", 0) > 0.9:
            err_txt += ", CPU %s (load) %.0f%% busy" % (CLIENT_CPU, 100 * rec["client_busy"])
        if "send_lag_p99_us" in rec and rec.get("load_wait_ms", 0) >= WAIT_NOTE_MS:
            # Open loop: the generator never sleeps, so all its run-queue wait is CPU 1 taken by other tasks.
            err_txt += ", other tasks held CPU %s from the load generator for %.0f ms" % (CLIENT_CPU, rec["load_wait_ms"])
        if rec.get("cpu0_other", 0) > 0.1:
            err_txt += ", other processes took %.0f%% of CPU %s" % (100 * rec["cpu0_other"], SERVER_CPU)
        log("  %-8s %-20s rep %d: %s%s%s" % (t.name, mid, rep, shown, cpu_txt, err_txt))
        return rec

    def selected_specs(self):
        specs = metric_specs(self.prof)
        if self.opts.metrics:
            specs = [s for s in specs if s["id"] in self.opts.metrics]
        return specs

    def run_metrics(self):
        specs = self.selected_specs()
        for spec in specs:
            targets = [t for t in self.targets if self.eligible(spec, t)]
            if not targets:
                continue
            log("\n== %s (%d x %gs, targets %s)" % (spec["title"], self.prof["reps"], self.prof["duration"],
                                                     " ".join(t.name for t in targets)))
            for rep in range(1, self.prof["reps"] + 1):
                for t in targets:  # interleaved: A B C A B C ...
                    self.measure(spec, t, rep)
            if spec["id"] == "dot_qps":
                self.half_rate_latency(spec, specs)
        self.specs = specs

    def half_rate_latency(self, qps_spec, specs):
        """ztdns's p99 at half its own maximum rate (issue 3's goal)."""
        z = [t for t in self.targets if t.name == "ztdns" and self.eligible(qps_spec, t)]
        vals = [r["value"] for r in self.records if r["metric"] == "dot_qps" and r["target"] == "ztdns" and r["ok"]]
        if not z or not vals:
            return
        rate = int(median(vals) / 2)
        lat = dict(next(s for s in metric_specs(self.prof) if s["id"] == "dot_latency"))  # also under --metrics dot_qps
        lat["args"] = ["--rate", str(rate), "--connections", "4"]
        self.half_spec = lat
        log("\n== ztdns DoT latency at half its maximum rate (%d q/s)" % rate)
        for rep in range(1, self.prof["reps"] + 1):
            self.measure(lat, z[0], rep, metric_id="dot_latency_half")
        self.half_rate = rate

    def run_idle(self):
        n = self.prof["idle_n"]
        targets = [t for t in self.targets if t.proxy and not t.plain and not self.target_status[t.name]["proxy"]]
        if not targets:
            return
        log("\n== memory per idle tunnel: %d tunnels, fresh server process each time" % n)
        for rep in range(1, self.prof["idle_reps"] + 1):
            for t in targets:
                rec = dict(metric="proxy_idle_memory", target=t.name, rep=rep, ok=False)
                try:
                    t.restart_proxy()
                    self.one_check(t, "proxy", "ok")  # TLS contexts and first-use allocations before the baseline
                    time.sleep(0.5)
                    rss0 = procs.rss_kb(t.pids())
                    args = self.loader_args(t, "proxy", service="echo") + [
                        "--mode", "idle", "--connections", str(n), "--connect-concurrency", "64",
                        "--duration", "600", "--timeout", "10", "--label", t.name]
                    res = self.idle_run(t, args, n)
                    rec.update(res)
                    if res.get("established"):
                        rec["rss_before_kb"] = rss0
                        rec["value"] = (res["rss_after_kb"] - rss0) / res["established"]
                        rec["ok"] = True
                        log("  %-8s idle rep %d: %d tunnels, RSS %d -> %d KiB: %.1f KiB per tunnel%s" % (
                            t.name, rep, res["established"], rss0, res["rss_after_kb"], rec["value"],
                            (", %d failed" % res["failed"]) if res.get("failed") else ""))
                    else:
                        rec["error"] = res.get("error", "no tunnel established")
                        log("  %-8s idle rep %d: %s" % (t.name, rep, rec["error"]))
                except peers.Unavailable as e:
                    rec["error"] = str(e)
                    log("  %-8s idle rep %d: %s" % (t.name, rep, e))
                self.records.append(rec)

    def idle_run(self, t, args, n):
        argv = ["taskset", "-c", CLIENT_CPU, self.bin("zt-proxyload")] + args
        p = subprocess.Popen(argv, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, start_new_session=True, text=True,
                             preexec_fn=procs.die_with_parent)
        self.procs.started.append(("load", p))
        self.procs.note(p, argv)
        killer = threading.Timer(120 + n / 50, lambda: _killpg(p))
        killer.start()
        res = {}
        try:
            for raw in p.stdout:
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                obj.update(dict(target=t.name, metric_id="proxy_idle_memory"))
                self.raw.write(json.dumps(obj) + "\n")
                if obj.get("event") == "idle_established":
                    time.sleep(1.0)  # let the server settle (deferred frees, buffers returned)
                    res["rss_after_kb"] = procs.rss_kb(t.pids())
                    res["setup_s"] = obj.get("setup_s")
                    _killpg(p, signal.SIGTERM)
                elif obj.get("metric") == "idle_tunnels":
                    res["established"] = obj.get("value", 0)
                    res["failed"] = obj.get("failed", 0)
                    if obj.get("first_error"):
                        res["first_error"] = obj["first_error"]
            p.wait()
            if "established" not in res:
                res["error"] = p.stderr.read().strip()[-300:] or "no result"
        finally:
            killer.cancel()
            self.procs.started = [(nm, q) for (nm, q) in self.procs.started if q is not p]
        return res

    # ---- crypto ceiling, micro-benchmarks -------------------------------------------------------------------------

    def crypto_ceiling(self):
        s = str(self.prof["speed_s"])
        out = procs.run_text(["taskset", "-c", SERVER_CPU, "openssl", "speed", "-seconds", s, "-bytes", "16384",
                              "-evp", "aes-128-gcm"], timeout=60)
        m = re.search(r"^AES-128-GCM\s+([\d.]+)k", out, re.M)
        if m:
            self.crypto["aes128gcm_mb_s"] = float(m.group(1)) / 1000.0
        log("crypto ceiling: openssl speed -evp aes-128-gcm (16 KiB, CPU %s): %s MB/s" % (
            SERVER_CPU, fmt_num(self.crypto.get("aes128gcm_mb_s"))))
        if self.profile_name != "smoke":
            out = procs.run_text(["taskset", "-c", SERVER_CPU, "openssl", "speed", "-seconds", s, "ecdsap256"],
                                 timeout=60)
            m = re.search(r"256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)", out)
            if m:
                self.crypto["ecdsa_p256_sign_s"] = float(m.group(1))
                self.crypto["ecdsa_p256_verify_s"] = float(m.group(2))
                log("crypto ceiling: openssl speed ecdsap256: %s sign/s, %s verify/s" % (
                    fmt_num(float(m.group(1))), fmt_num(float(m.group(2)))))

    def run_micro(self):
        d = os.path.join(self.build, "bench")
        bins = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith("_bench")) if os.path.isdir(d) else []
        bins = [b for b in bins if os.access(b, os.X_OK)]
        log("\n== micro-benchmarks: %s" % (", ".join(os.path.basename(b) for b in bins) or "none built"))
        if not bins:
            self.notes.append("--micro: no build/bench/*_bench binary in %s" % self.build)
        for b in bins:
            out_json = os.path.join(self.work, os.path.basename(b) + ".json")
            argv = ["taskset", "-c", SERVER_CPU, b, "--benchmark_format=json",
                    "--benchmark_out=" + out_json, "--benchmark_out_format=json",
                    "--benchmark_min_time=%g" % self.prof["micro_min_time"]]
            try:
                subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
                with open(out_json) as f:
                    data = json.load(f)
            except (OSError, ValueError, subprocess.TimeoutExpired) as e:
                self.micro.append(dict(binary=os.path.basename(b), error=str(e)))
                continue
            for bm in data.get("benchmarks", []):
                if bm.get("run_type", "iteration") != "iteration":
                    continue
                self.micro.append(dict(binary=os.path.basename(b), name=bm.get("name"),
                                       real_time=bm.get("real_time"), cpu_time=bm.get("cpu_time"),
                                       time_unit=bm.get("time_unit", "ns"), iterations=bm.get("iterations"),
                                       items_per_second=bm.get("items_per_second"),
                                       bytes_per_second=bm.get("bytes_per_second")))
                t = bm.get("real_time" if bm.get("name", "").endswith("/manual_time") else "cpu_time", 0)
                log("  %-40s %10.1f %s/iter" % (bm.get("name"), t, bm.get("time_unit", "ns")))

    # ---- the whole run ---------------------------------------------------------------------------------------------

    def run(self, names):
        log("bench/run: profile %s, output %s" % (self.profile_name, self.out))
        self.ensure_tools()
        self.record_machine()
        if self.machine["busy_before"] and max(self.machine["busy_before"]) > 0.25:
            self.notes.append("the machine was busy before the run (CPU busy fractions %s): other work competes "
                              "with the measurement" % ", ".join("%.0f%%" % (100 * b)
                                                                  for b in self.machine["busy_before"]))
        self.start_targets(names)
        self.run_checks()
        failed = [c for c in self.checks if c["status"] == "FAIL"]
        log("\ncorrectness: %d checks passed, %d failed, %d n/a, %d skipped" % (
            sum(c["status"] == "pass" for c in self.checks), len(failed),
            sum(c["status"] == "n/a" for c in self.checks), sum(c["status"] == "skip" for c in self.checks)))
        self.crypto_ceiling()
        self.run_metrics()
        if not self.opts.metrics or "proxy_idle_memory" in self.opts.metrics:
            self.run_idle()
        if self.opts.micro:
            self.run_micro()
        self.machine["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
        self.machine["elapsed_s"] = time.time() - self.started
        for t in self.targets:
            self.target_status[t.name]["title"] = t.title
            self.target_status[t.name]["notes"] = list(t.notes)
        results = dict(machine=self.machine, profile=self.prof, profile_name=self.profile_name,
                       targets=self.target_status, order=[t.name for t in self.targets], checks=self.checks,
                       records=self.records, crypto=self.crypto, micro=self.micro, notes=self.notes,
                       half_rate=getattr(self, "half_rate", None), half_spec=getattr(self, "half_spec", None),
                       specs=[{k: v for k, v in s.items()} for s in self.selected_specs()])
        with open(os.path.join(self.out, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(self.out, "checks.json"), "w") as f:
            json.dump(self.checks, f, indent=1)
        report.write(self.out, results)
        log("\nreport: %s" % os.path.join(self.out, "report.md"))
        log("elapsed: %.0f s" % self.machine["elapsed_s"])
        return 3 if failed else 0

    def cleanup(self):
        for t in getattr(self, "targets", []):
            try:
                (t.stop_all if hasattr(t, "stop_all") else t.stop)()
            except Exception:  # noqa: BLE001 - cleanup goes on whatever happens
                pass
        self.procs.stop_all()
        try:
            self.raw.close()
        except OSError:
            pass


def busy_fraction(seconds):
    """Per-CPU busy fraction over the next `seconds` (from /proc/stat)."""
    a = procs.cpu_times()
    time.sleep(seconds)
    b = procs.busy_between(a, procs.cpu_times())
    return [b[c] for c in sorted(b)]


def fmt_num(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return "{:,.0f}".format(v)
    if abs(v) >= 10:
        return "%.1f" % v
    return "%.2f" % v


def _killpg(p, sig=signal.SIGKILL):
    try:
        os.killpg(p.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv):
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Profiles: full (default, < 30 min: 5 x 5 s per metric, 8000 idle tunnels), "
                                        "--quick (< 5 min: 2 x 2 s, 1000 idle tunnels), --smoke (1 x 1 s, for "
                                        "tests/e2e/bench_smoke_test.sh). Binaries come from ${ZT_BUILD:-build}.")
    ap.add_argument("--quick", action="store_true", help="short run, under 5 minutes")
    ap.add_argument("--smoke", action="store_true", help="pipeline check: 1 repetition of 1 s, fewer metrics")
    ap.add_argument("--micro", action="store_true", help="also run the Google Benchmark binaries build/bench/*_bench")
    ap.add_argument("--targets", help="comma-separated subset of " + ",".join(peers.ORDER))
    ap.add_argument("--out", help="output directory (default $TMPDIR/ztdns-bench/<UTC time>)")
    known_metrics = [s["id"] for s in metric_specs(dict(PROFILES["full"]))] + ["proxy_idle_memory"]
    ap.add_argument("--metrics", help="comma-separated subset of the metric ids (%s)" % ", ".join(known_metrics))
    ap.add_argument("--reps", type=int, help="override the repetitions of each metric")
    ap.add_argument("--duration", type=float, help="override the seconds of each measured window")
    ap.add_argument("--idle-tunnels", type=int, help="override the number of idle tunnels")
    ap.add_argument("--dot-rate", type=int, help="override the fixed DoT rate of the latency metric (q/s)")
    ap.add_argument("--render", metavar="DIR", help="only re-write DIR/report.md and its plots from DIR/results.json")
    opts = ap.parse_args(argv)
    if opts.metrics:
        opts.metrics = [m.strip() for m in opts.metrics.split(",") if m.strip()]
        unknown = [m for m in opts.metrics if m not in known_metrics]
        if unknown:
            ap.error("unknown metric(s) %s; known: %s" % (", ".join(unknown), ",".join(known_metrics)))
    if opts.render:
        with open(os.path.join(opts.render, "results.json")) as f:
            report.write(os.path.abspath(opts.render), json.load(f))
        log("report: %s" % os.path.join(opts.render, "report.md"))
        return 0
    if opts.targets:
        names = [n.strip() for n in opts.targets.split(",") if n.strip()]
        unknown = [n for n in names if n not in peers.ALL]
        if unknown:
            ap.error("unknown target(s) %s; known: %s" % (", ".join(unknown), ",".join(peers.ORDER)))
        names = [n for n in peers.ORDER if n in names]
    elif opts.smoke:
        names = ["ztdns", "haproxy", "unbound", "ztdns-endpoint", "direct"]
    else:
        names = list(peers.ORDER)
    if os.cpu_count() < 2:
        sys.exit("bench/run: needs 2 CPUs (server on CPU 0, load on CPU 1)")
    h = Harness(opts)

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    try:
        return h.run(names)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        h.cleanup()
