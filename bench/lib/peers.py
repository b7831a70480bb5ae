"""The targets of the side-by-side benchmark: certificates, the peers (HAProxy,
nginx, unbound, dnsdist, BIND) started from Debian's packages with configs
generated from bench/peers/*.in, the direct baseline, and ztdns itself.

A target says what it serves (DoT, TLS proxy), where, with which credentials,
what it can enforce (client certificate required, CN allow-list), and which
processes are the server (for CPU time and RSS).
"""

import ipaddress
import json
import os
import re
import shutil
import subprocess
import time

import procs

ANSWER = "203.0.113.50"  # what every DoT target answers for echo.bench.test
SERVICES = ("echo", "sink", "source")
# ztdns.json limits for the benchmark (everything else stays as `ztdns init` wrote it).
BENCH_LIMITS = {"max_connections_per_cn": 1000000, "max_connections_per_shard": 100000,
                "max_queries_per_connection": 100000000, "idle_timeout_ms": 120000}
PEERS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "peers")


class Unavailable(Exception):
    """The target cannot run here (not installed, not built, failed to start)."""


def render(template, dest, **values):
    with open(os.path.join(PEERS_DIR, template)) as f:
        text = f.read()

    def sub(m):
        key = m.group(1)
        if key not in values:
            raise KeyError("%s: no value for {{%s}}" % (template, key))
        return str(values[key])

    with open(dest, "w") as f:
        f.write(re.sub(r"\{\{(\w+)\}\}", sub, text))
    return dest


def first_line(text):
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return "?"


# ---- certificates ------------------------------------------------------------------------------------------------


class Certs:
    """A bench CA (ECDSA P-256), server certificates (P-256, and RSA 4096 for the
    handshake variant), an authorized client (CN bench-client-ok) and an
    unauthorized one (CN bench-client-bad), made with openssl."""

    def __init__(self, dir):
        self.dir = dir
        os.makedirs(dir, exist_ok=True)
        p = lambda n: os.path.join(dir, n)  # noqa: E731
        self.ca, self.ca_key = p("ca.crt"), p("ca.key")
        self.server_crt, self.server_key, self.server_pem = p("server.crt"), p("server.key"), p("server.pem")
        self.rsa_crt, self.rsa_key, self.rsa_pem = p("server-rsa.crt"), p("server-rsa.key"), p("server-rsa.pem")
        self.ok_crt, self.ok_key = p("client-ok.crt"), p("client-ok.key")
        self.bad_crt, self.bad_key = p("client-bad.crt"), p("client-bad.key")

    def _openssl(self, *args):
        r = subprocess.run(["openssl"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError("openssl %s: %s" % (" ".join(args), r.stdout.decode(errors="replace")))

    def _issue(self, name, cn, key_args, ext):
        key, csr, crt, extf = (os.path.join(self.dir, name + s) for s in (".key", ".csr", ".crt", ".ext"))
        self._openssl("genpkey", "-out", key, *key_args)
        self._openssl("req", "-new", "-key", key, "-subj", "/O=zt-bench/CN=" + cn, "-out", csr)
        with open(extf, "w") as f:
            f.write(ext)
        self._openssl("x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key, "-CAcreateserial",
                      "-days", "30", "-sha256", "-extfile", extf, "-out", crt)
        os.chmod(key, 0o600)

    def make(self, rsa=True):
        ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]
        self._openssl("genpkey", "-out", self.ca_key, *ec)
        self._openssl("req", "-x509", "-new", "-key", self.ca_key, "-subj", "/O=zt-bench/CN=zt-bench CA", "-days", "30",
                      "-sha256", "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", self.ca)
        server_ext = ("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                      "extendedKeyUsage=serverAuth\n"
                      "subjectAltName=DNS:bench-server,DNS:*.bench.test,IP:127.0.0.1\n")
        client_ext = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n"
        self._issue("server", "bench-server", ec, server_ext)
        if rsa:
            self._issue("server-rsa", "bench-server", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:4096"],
                        server_ext)
        self._issue("client-ok", "bench-client-ok", ec, client_ext)
        self._issue("client-bad", "bench-client-bad", ec, client_ext)
        for crt, key, pem in ((self.server_crt, self.server_key, self.server_pem),
                              (self.rsa_crt, self.rsa_key, self.rsa_pem)):
            if os.path.exists(crt):
                with open(pem, "w") as out:
                    for part in (crt, key):
                        with open(part) as f:
                            out.write(f.read())


# ---- targets -------------------------------------------------------------------------------------------------------


class Target:
    name = "?"
    title = "?"
    dot = False            # serves DNS over TLS
    proxy = False          # serves the TLS proxy
    rsa = False            # has an RSA 4096 proxy endpoint
    plain = False          # the direct baseline: plain TCP to the backend
    requires_cert = False  # refuses a client without a certificate
    cn_filter = False      # refuses a certificate whose CN is not allowed
    metrics = None         # ids of the only metrics this target is measured on (None: every one of its kind)
    notes = ()

    def __init__(self, ctx):
        self.ctx = ctx
        self.proc = None
        self.dot_addr = self.proxy_addr = self.proxy_rsa_addr = None
        self.dir = os.path.join(ctx.work, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.log = os.path.join(self.dir, self.name + ".log")
        self.proxy_status = None  # None: fine; else why the proxy side is not measured

    # credentials: (ca, cert, key); cert None means no client certificate
    def creds(self, which, rsa=False):
        c = self.ctx.certs
        if which == "ok":
            return c.ca, c.ok_crt, c.ok_key
        if which == "bad":
            return c.ca, c.bad_crt, c.bad_key
        return c.ca, None, None

    def backend_addr(self, service):
        return "127.0.0.1:%d" % self.ctx.backend_ports[service]

    def pids(self, rsa=False):
        return procs.session_pids(self.proc.pid) if self.proc and self.proc.poll() is None else []

    def endpoint_pids(self):
        """Client-side processes of the target (pinned with the load generator): their CPU is reported apart."""
        return []

    def version(self):
        return "?"

    def start(self):
        raise NotImplementedError

    def stop(self):
        if self.proc is not None:
            self.ctx.procs.stop(self.proc)
            self.proc = None

    def restart_proxy(self):
        """A fresh server process for the proxy (the memory measurement starts from it)."""
        self.stop()
        self.start()

    def _launch(self, argv, port, timeout=15, cpu=None, cwd=None):
        if shutil.which(argv[0]) is None and not os.access(argv[0], os.X_OK):
            raise Unavailable("%s is not installed (scripts/setup installs it)" % argv[0])
        self.proc = self.ctx.procs.start(self.name, argv, cpu=self.ctx.server_cpu if cpu is None else cpu,
                                         log=self.log, cwd=cwd)
        if not procs.wait_port(port, timeout, self.proc):
            why = "exited" if self.proc.poll() is not None else "did not listen on port %d" % port
            log = procs.tail(self.log)
            self.stop()
            raise Unavailable("%s %s: %s" % (argv[0], why, log.strip()[-600:]))

    def _check_config(self, argv):
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise Unavailable("config check failed (%s): %s" % (" ".join(argv), r.stdout.decode(errors="replace")))


class Direct(Target):
    name, title = "direct", "direct (no proxy)"
    proxy, plain = True, True
    notes = ("plain TCP from the load generator (CPU 1) to its own zt-echo backend pinned to CPU 0: the floor "
             "every proxy adds to, across the same two cores",)

    def start(self):
        if not hasattr(self, "ports"):
            self.ports = {s: procs.free_port() for s in SERVICES}
        argv = [self.ctx.echo_bin] + sum((["--" + s, "127.0.0.1:%d" % p] for s, p in self.ports.items()), [])
        self._launch(argv, self.ports["echo"])
        self.proxy_addr = "127.0.0.1:%d" % self.ports["echo"]

    def backend_addr(self, service):
        return "127.0.0.1:%d" % self.ports[service]

    def version(self):
        return "zt-echo (bench/load), plain TCP"


class Haproxy(Target):
    name, title = "haproxy", "HAProxy"
    proxy = rsa = requires_cert = cn_filter = True
    notes = ("mode tcp, `ssl crt ... ca-file ... verify required`, SNI routing with `ssl_fc_sni`, "
             "CN allow-list with `ssl_c_s_dn(cn)`, nbthread 1",)

    def version(self):
        return first_line(procs.run_text(["haproxy", "-v"]))

    def start(self):
        c = self.ctx.certs
        if self.proxy_addr is None:
            self.port, self.rsa_port = procs.free_port(), procs.free_port()
        cn_list = os.path.join(self.dir, "allowed-cns.lst")
        with open(cn_list, "w") as f:
            f.write("bench-client-ok\n")
        cfg = render("haproxy.cfg.in", os.path.join(self.dir, "haproxy.cfg"), port=self.port, rsa_port=self.rsa_port,
                     server_pem=c.server_pem, server_rsa_pem=c.rsa_pem, ca=c.ca, cn_list=cn_list,
                     echo_port=self.ctx.backend_ports["echo"], sink_port=self.ctx.backend_ports["sink"],
                     source_port=self.ctx.backend_ports["source"])
        self._check_config(["haproxy", "-c", "-q", "-f", cfg])
        self._launch(["haproxy", "-db", "-f", cfg], self.port)
        self.proxy_addr = "127.0.0.1:%d" % self.port
        self.proxy_rsa_addr = "127.0.0.1:%d" % self.rsa_port


class Nginx(Target):
    name, title = "nginx", "nginx"
    proxy = rsa = requires_cert = cn_filter = True
    notes = ("stream module, `ssl_verify_client on`, `$ssl_server_name` map to the backend, CN allow-list map on "
             "`$ssl_client_s_dn` (not allowed: routed to a server that closes), worker_processes 1",)

    def version(self):
        return first_line(procs.run_text(["nginx", "-v"]))

    def start(self):
        c = self.ctx.certs
        if self.proxy_addr is None:
            self.port, self.rsa_port = procs.free_port(), procs.free_port()
        sock = os.path.join(self.dir, "deny.sock")
        if os.path.exists(sock):
            os.unlink(sock)
        cfg = render("nginx.conf.in", os.path.join(self.dir, "nginx.conf"), dir=self.dir, port=self.port,
                     rsa_port=self.rsa_port, ca=c.ca, server_crt=c.server_crt, server_key=c.server_key,
                     server_rsa_crt=c.rsa_crt, server_rsa_key=c.rsa_key,
                     echo_port=self.ctx.backend_ports["echo"], sink_port=self.ctx.backend_ports["sink"],
                     source_port=self.ctx.backend_ports["source"])
        errlog = os.path.join(self.dir, "nginx-error.log")
        self._check_config(["nginx", "-t", "-q", "-p", self.dir, "-c", cfg, "-e", errlog])
        self._launch(["nginx", "-p", self.dir, "-c", cfg, "-e", errlog], self.port)
        self.proxy_addr = "127.0.0.1:%d" % self.port
        self.proxy_rsa_addr = "127.0.0.1:%d" % self.rsa_port


class Unbound(Target):
    name, title = "unbound", "unbound"
    dot = True
    notes = ("DoT with a `local-data` answer, num-threads 1; cannot ask for a client certificate, so it cannot "
             "refuse anyone; does not set TCP_NODELAY (a new connection waits ~40 ms on a delayed ACK)",)

    def version(self):
        return first_line(procs.run_text(["unbound", "-V"]))

    def start(self):
        c = self.ctx.certs
        self.port = procs.free_port()
        cfg = render("unbound.conf.in", os.path.join(self.dir, "unbound.conf"), dir=self.dir, port=self.port,
                     server_key=c.server_key, server_crt=c.server_crt, answer=ANSWER)
        self._check_config(["unbound-checkconf", cfg])
        self._launch(["unbound", "-d", "-c", cfg], self.port)
        self.dot_addr = "127.0.0.1:%d" % self.port


class Dnsdist(Target):
    name, title = "dnsdist", "dnsdist"
    dot = True
    notes = ("DoT frontend (`addTLSLocal`, OpenSSL provider); echo.bench.test answered by dnsdist itself with "
             "`SpoofAction` (no backend); cannot ask for a client certificate, so it cannot refuse anyone",)

    def version(self):
        return first_line(procs.run_text(["dnsdist", "--version"]))

    def start(self):
        c = self.ctx.certs
        self.port, udp = procs.free_port(), procs.free_port()
        cfg = render("dnsdist.conf.in", os.path.join(self.dir, "dnsdist.conf"), port=self.port, udp_port=udp,
                     server_key=c.server_key, server_crt=c.server_crt, answer=ANSWER)
        self._check_config(["dnsdist", "--check-config", "-C", cfg])
        self._launch(["dnsdist", "--supervised", "--disable-syslog", "-C", cfg], self.port)
        self.dot_addr = "127.0.0.1:%d" % self.port


class Bind(Target):
    name, title = "bind", "BIND"
    dot = requires_cert = True
    notes = ("DoT with `tls { ca-file ...; }` on the listener: mutual TLS, a client certificate from the CA is "
             "required; BIND 9.18 cannot filter by the certificate's CN (any certificate from the CA is answered); "
             "one worker thread (-n 1), authoritative zone",)

    def version(self):
        return first_line(procs.run_text(["named", "-v"]))

    def start(self):
        c = self.ctx.certs
        self.port, udp = procs.free_port(), procs.free_port()
        render("bench.test.zone.in", os.path.join(self.dir, "bench.test.zone"), answer=ANSWER)
        cfg = render("named.conf.in", os.path.join(self.dir, "named.conf"), dir=self.dir, port=self.port,
                     udp_port=udp, ca=c.ca, server_key=c.server_key, server_crt=c.server_crt)
        self._check_config(["named-checkconf", cfg])
        self._launch(["named", "-g", "-n", "1", "-c", cfg], self.port, timeout=20)
        self.dot_addr = "127.0.0.1:%d" % self.port


class Ztdns(Target):
    """ztdns-control + ztdns-dataplane from the build dir, set up with the ztdns CLI:
    init, three services (echo, sink, source), an authorized client and one that
    is not authorized for anything."""

    name, title = "ztdns", "ztdns"
    dot = proxy = rsa = requires_cert = cn_filter = True
    proxy_address = ANSWER  # what DNS hands out for a private name (`ztdns init --proxy-address`)
    notes = ("ztdns-dataplane from the build dir, one shard (`shards: 1` in ztdns.json, and `--shards 1` when the "
             "binary takes it), `--log-queries off` (no peer logs each query), limits in ztdns.json raised for "
             "a benchmark where one CN carries all the load (%s); certificates from "
             "`ztdns init / client add`; the client `bench-client-bad` exists "
             "but is authorized for nothing; the RSA 4096 handshake row is a second appliance made with "
             "`ztdns init --key rsa4096`; its upstream resolver is a loopback unbound (CPU 1) that answers "
             "NXDOMAIN for every public name",)
    notes = (notes[0] % ", ".join("%s %s" % kv for kv in BENCH_LIMITS.items()),)

    def __init__(self, ctx):
        super().__init__(ctx)
        b = ctx.build
        self.bin_dataplane = os.path.join(b, "dataplane", "ztdns-dataplane")
        self.bin_control = os.path.join(b, "control", "ztdns-control")
        self.bin_cli = os.path.join(b, "tools", "ztdns")
        self.inst = {}  # key type -> instance dict
        self.rsa_status = None  # why the RSA 4096 instance is missing
        self.upstream_port = self.upstream_proc = None

    def version(self):
        rev = procs.run_text(["git", "-C", self.ctx.repo, "describe", "--always", "--dirty"]).strip()
        return "ztdns %s (%s)" % (rev or "?", self.ctx.build)

    def missing(self):
        return [p for p in (self.bin_dataplane, self.bin_control, self.bin_cli) if not os.access(p, os.X_OK)]

    def _cli(self, d, *args):
        r = subprocess.run([self.bin_cli, "--data-dir", d] + list(args), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
        out = r.stdout.decode(errors="replace")
        if r.returncode != 0:
            raise Unavailable("ztdns %s: %s" % (" ".join(args), out.strip()))
        return out

    def _upstream(self):
        """A loopback unbound answering NXDOMAIN for every public name (ztdns forwards those): the answer a
        name that does not exist gets, which an unauthorized CN must get too. Falls back to a dead port."""
        if self.upstream_port is None:
            self.upstream_port = procs.free_port()
            if shutil.which("unbound"):
                cfg = render("upstream.conf.in", os.path.join(self.dir, "upstream.conf"), dir=self.dir,
                             port=self.upstream_port)
                self.upstream_proc = self.ctx.procs.start("ztdns-upstream", ["unbound", "-d", "-c", cfg],
                                                          cpu=self.ctx.client_cpu,
                                                          log=os.path.join(self.dir, "upstream.log"))
                if not procs.wait_port(self.upstream_port, 10, self.upstream_proc):
                    self.upstream_port = self.ctx.dead_port
            else:
                self.upstream_port = self.ctx.dead_port
        return self.upstream_port

    def _setup(self, key):
        """Data dir, control, services and clients for one key type; returns the instance."""
        d = os.path.join(self.dir, "data-" + key)
        if os.path.exists(d):
            shutil.rmtree(d)
        inst = {"dir": d, "dot": procs.free_port(), "proxy": procs.free_port(), "admin": procs.free_port()}
        self._cli(d, "init", "--proxy-address", self.proxy_address, "--server-name", "bench-edge",
                  "--dot-listen", "127.0.0.1:%d" % inst["dot"], "--proxy-listen", "127.0.0.1:%d" % inst["proxy"],
                  "--admin-listen", "127.0.0.1:%d" % inst["admin"],
                  "--upstream", "127.0.0.1:%d" % self._upstream(), "--key", key)
        inst["control"] = self.ctx.procs.start("ztdns-control-" + key, [self.bin_control, "--data-dir", d],
                                               cpu=self.ctx.client_cpu,
                                               log=os.path.join(self.dir, "control-%s.log" % key))
        sock = os.path.join(d, "control.sock")
        deadline = time.time() + 15
        while not os.path.exists(sock):
            if inst["control"].poll() is not None or time.time() > deadline:
                raise Unavailable("ztdns-control did not start: " +
                                  procs.tail(os.path.join(self.dir, "control-%s.log" % key)).strip()[-600:])
            time.sleep(0.05)
        for svc in SERVICES:
            self._cli(d, "service", "add", "--name", "bench " + svc, "--host", "127.0.0.1",
                      "--port", str(self.ctx.backend_ports[svc]), "--domain", svc + ".bench.test")
        bundles = os.path.join(d, "bundles")
        cns = {}
        for who in ("bench-client-ok", "bench-client-bad"):
            before = set(os.listdir(bundles)) if os.path.isdir(bundles) else set()
            self._cli(d, "client", "add", who)
            new = sorted(set(os.listdir(bundles)) - before)
            if len(new) != 1:
                raise Unavailable("ztdns client add %s: cannot find its bundle in %s" % (who, bundles))
            cns[who] = new[0]
        for svc in SERVICES:
            self._cli(d, "authorize", cns["bench-client-ok"], svc + ".bench.test")
        inst["cn_ok"], inst["cn_bad"] = cns["bench-client-ok"], cns["bench-client-bad"]
        # Edited the way an operator would, then reloaded: one shard (one core, like every peer), and limits
        # that fit a benchmark where one CN carries all the load (the peers have no such limits; their idle
        # timeouts are 120 s too).
        app_file = os.path.join(d, "ztdns.json")
        with open(app_file) as f:
            app = json.load(f)
        if "shards" in app:
            app["shards"] = 1
        limits = app.get("limits")
        if isinstance(limits, dict):
            for k, v in BENCH_LIMITS.items():
                if k in limits:
                    limits[k] = v
        with open(app_file + ".tmp", "w") as f:
            json.dump(app, f, indent=2)
        os.replace(app_file + ".tmp", app_file)
        self._cli(d, "reload")
        inst["ca"] = os.path.join(d, "ca", "ca.crt")
        return inst

    def _start_dataplane(self, inst, key):
        help_text = procs.run_text([self.bin_dataplane, "--help"], timeout=10)
        argv = [self.bin_dataplane, "--data-dir", inst["dir"]]
        if "--shards" in help_text:
            argv += ["--shards", "1"]
        if "--log-queries" in help_text:
            argv += ["--log-queries", "off"]  # no peer logs each query either
        extra = os.environ.get("ZT_DATAPLANE_ARGS", "").split()
        log = os.path.join(self.dir, "dataplane-%s.log" % key)
        p = self.ctx.procs.start("ztdns-dataplane-" + key, argv + extra, cpu=self.ctx.server_cpu, log=log)
        inst["proc"], inst["argv"] = p, argv + extra
        if not procs.wait_port(inst["dot"], 20, p) and not procs.wait_port(inst["proxy"], 1, p):
            why = "exited" if p.poll() is not None else "listens on neither its DoT nor its proxy port"
            self.ctx.procs.stop(p)
            raise Unavailable("ztdns-dataplane %s: %s" % (why, procs.tail(log).strip()[-600:]))

    def _start_main(self):
        """The ECDSA P-256 appliance (set up the first time) and its data plane; returns the instance."""
        missing = self.missing()
        if missing:
            raise Unavailable("not built yet (%s missing in %s)" % (
                ", ".join(os.path.relpath(m, self.ctx.build) for m in missing), self.ctx.build))
        if "ecdsa-p256" not in self.inst:
            self.inst["ecdsa-p256"] = self._setup("ecdsa-p256")
        main = self.inst["ecdsa-p256"]
        self._start_dataplane(main, "ecdsa-p256")
        self.proc = main["proc"]
        return main

    def start(self):
        main = self._start_main()
        self.dot_addr = "127.0.0.1:%d" % main["dot"]
        self.proxy_addr = "127.0.0.1:%d" % main["proxy"]
        if self.ctx.want_rsa and self.rsa_status is None:
            # The RSA 4096 variant (handshake rate only) is a second appliance; without it the rest still runs.
            try:
                if "rsa4096" not in self.inst:
                    self.inst["rsa4096"] = self._setup("rsa4096")
                self._start_dataplane(self.inst["rsa4096"], "rsa4096")
                self.proxy_rsa_addr = "127.0.0.1:%d" % self.inst["rsa4096"]["proxy"]
            except Unavailable as e:
                self.rsa_status = "RSA 4096 instance: %s" % e
                self.notes = tuple(self.notes) + (self.rsa_status,)
        if not procs.wait_port(main["proxy"], 2, self.proc):
            self.proxy_status = "ztdns-dataplane does not listen on its proxy port (proxy service not there yet)"
        else:
            self.proxy_status = None

    def stop(self):
        for inst in self.inst.values():
            if inst.get("proc") is not None:
                self.ctx.procs.stop(inst["proc"])
                inst["proc"] = None
        self.proc = None

    def stop_all(self):
        self.stop()
        if self.upstream_proc is not None:
            self.ctx.procs.stop(self.upstream_proc)
            self.upstream_proc = None
        for inst in self.inst.values():
            if inst.get("control") is not None:
                self.ctx.procs.stop(inst["control"])
                inst["control"] = None

    def restart_proxy(self):
        main = self.inst["ecdsa-p256"]
        if main.get("proc") is not None:
            self.ctx.procs.stop(main["proc"])
        self._start_dataplane(main, "ecdsa-p256")
        self.proc = main["proc"]
        procs.wait_port(main["proxy"], 5, self.proc)

    def creds(self, which, rsa=False):
        inst = self.inst["rsa4096" if rsa else "ecdsa-p256"]
        if which == "none":
            return inst["ca"], None, None
        cn = inst["cn_ok"] if which == "ok" else inst["cn_bad"]
        b = os.path.join(inst["dir"], "bundles", cn)
        return inst["ca"], os.path.join(b, "cert.pem"), os.path.join(b, "key.pem")

    def pids(self, rsa=False):
        inst = self.inst.get("rsa4096" if rsa else "ecdsa-p256")
        p = inst.get("proc") if inst else None
        return procs.session_pids(p.pid) if p is not None and p.poll() is None else []


class ZtdnsEndpoint(Ztdns):
    """ztdns-endpoint on the client side of its own appliance (control + data plane, set up like ztdns's): the
    application speaks plain TCP to the tunnel address the endpoint's stub answers, the endpoint carries it in
    mTLS to the data plane's proxy, which connects to the backend."""

    name, title = "ztdns-endpoint", "ztdns-endpoint + ztdns"
    dot = rsa = requires_cert = cn_filter = False
    proxy = plain = True  # the load generator speaks plain TCP, as for direct
    metrics = ("proxy_pingpong_c1", "proxy_bulk_t1")
    proxy_address = "127.0.0.1"  # the bundle's DoT server and proxy: the data plane's loopback listeners
    tunnel_net = "127.77.0.0/16"
    notes = ("its own appliance (`ztdns init --proxy-address 127.0.0.1`, so the bundle that `ztdns client add` "
             "writes names the data plane's loopback DoT and proxy ports), ztdns-dataplane on CPU 0 as for ztdns; "
             "ztdns-endpoint with that bundle pinned to **CPU 1** with the load generator and backends (it is a "
             "client-side process), its DNS stub on a loopback high port (`--listen 127.0.0.1:PORT`: "
             "/etc/resolv.conf is neither read nor written), tunnel addresses from " + tunnel_net + " asked of "
             "the stub with dig; the load generator speaks plain TCP to the tunnel address (`zt-proxyload "
             "--plain`, as for direct). Server CPU is the data plane's; the endpoint's is reported apart. Measured "
             "on the 1-tunnel ping-pong and bulk metrics only",)

    def __init__(self, ctx):
        super().__init__(ctx)
        self.bin_endpoint = os.path.join(ctx.build, "tools", "endpoint", "ztdns-endpoint")
        self.endpoint_proc = None
        self.tunnel_addrs = {}  # service -> tunnel address

    def version(self):
        return "ztdns-endpoint + " + super().version()

    def missing(self):
        return super().missing() + ([] if os.access(self.bin_endpoint, os.X_OK) else [self.bin_endpoint])

    def _upstream(self):
        return self.ctx.dead_port  # only private names are asked: nothing is forwarded upstream

    def start(self):
        if shutil.which("dig") is None:
            raise Unavailable("dig is not installed (bind9-dnsutils): it asks the endpoint's stub")
        main = self._start_main()
        try:
            if not procs.wait_port(main["proxy"], 5, self.proc):
                raise Unavailable("ztdns-dataplane does not listen on its proxy port")
            stub = procs.free_port()
            log = os.path.join(self.dir, "endpoint.log")
            argv = [self.bin_endpoint, "--bundle", os.path.join(main["dir"], "bundles", main["cn_ok"]),
                    "--listen", "127.0.0.1:%d" % stub, "--tunnel-net", self.tunnel_net]
            self.endpoint_proc = self.ctx.procs.start("ztdns-endpoint", argv, cpu=self.ctx.client_cpu, log=log)
            if not procs.wait_port(stub, 10, self.endpoint_proc):
                raise Unavailable("ztdns-endpoint does not serve DNS on 127.0.0.1:%d: %s" % (
                    stub, procs.tail(log).strip()[-600:]))
            self.tunnel_addrs = {svc: self._tunnel_address(stub, svc + ".bench.test", log) for svc in SERVICES}
        except Unavailable:
            self.stop()  # nothing of a target that is not measured runs on the measured cores
            raise
        self.proxy_addr = self.backend_addr("echo")

    def _tunnel_address(self, stub, name, log, timeout=15):
        """Asks the stub, as an application would, until it answers a tunnel address (the proxy's address until
        the endpoint has fetched the catalog of private zones)."""
        net = ipaddress.ip_network(self.tunnel_net)
        deadline = time.time() + timeout
        answer = ""
        while time.time() < deadline and self.endpoint_proc.poll() is None:
            answer = procs.run_text(["dig", "@127.0.0.1", "-p", str(stub), "+short", "+time=1", "+tries=1", name],
                                    timeout=5).strip()
            first = answer.splitlines()[0] if answer else ""
            if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", first) and ipaddress.ip_address(first) in net:
                return first
            time.sleep(0.1)
        raise Unavailable("the endpoint's stub answered no tunnel address for %s (last answer %r): %s" % (
            name, answer, procs.tail(log).strip()[-600:]))

    def backend_addr(self, service):
        return "%s:%d" % (self.tunnel_addrs[service], self.ctx.backend_ports[service])

    def endpoint_pids(self):
        p = self.endpoint_proc
        return procs.session_pids(p.pid) if p is not None and p.poll() is None else []

    def stop(self):
        if self.endpoint_proc is not None:
            self.ctx.procs.stop(self.endpoint_proc)
            self.endpoint_proc = None
        super().stop()


ALL = {"ztdns": Ztdns, "haproxy": Haproxy, "nginx": Nginx, "unbound": Unbound, "dnsdist": Dnsdist, "bind": Bind,
       "ztdns-endpoint": ZtdnsEndpoint, "direct": Direct}
ORDER = ["ztdns", "haproxy", "nginx", "unbound", "dnsdist", "bind", "ztdns-endpoint", "direct"]
