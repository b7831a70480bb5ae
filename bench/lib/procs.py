"""Processes the harness starts, and what /proc says about them.

Every process is started in its own session (so it and its children can be
found and stopped by that id), optionally pinned with taskset, and stopped on
exit: SIGTERM to its process group, SIGKILL after a grace period.
"""

import ctypes
import os
import signal
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
try:
    _libc = ctypes.CDLL(None, use_errno=True)
except OSError:
    _libc = None


def die_with_parent():
    """preexec_fn: SIGKILL this child if the harness itself is killed (even with SIGKILL)."""
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


class Procs:
    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.started = []  # (name, Popen)

    def start(self, name, argv, cpu=None, log=None, env=None, cwd=None, stdout=None):
        """Starts argv in a new session; stdout/stderr to log (a path) unless stdout is given."""
        if cpu is not None:
            argv = ["taskset", "-c", str(cpu)] + list(argv)
        if log is None:
            log = os.path.join(self.log_dir, name + ".log")
        out = open(log, "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                 stdout=stdout if stdout is not None else out,
                                 stderr=out, env=env, cwd=cwd, start_new_session=True,
                                 preexec_fn=die_with_parent)
        finally:
            out.close()
        self.started.append((name, p))
        self.note(p, argv)
        return p

    def note(self, p, argv):
        """Appends "pid program" to LOG_DIR/pids.txt: what was started, for a later check that all is gone."""
        prog = os.path.basename(argv[3] if argv[0] == "taskset" else argv[0])
        with open(os.path.join(self.log_dir, "pids.txt"), "a") as f:
            f.write("%d %s\n" % (p.pid, prog))

    def stop(self, p, grace=3.0):
        """SIGTERM to p's process group, SIGKILL after grace seconds."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Children that outlive the leader (nginx workers, forked daemons) share its group.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        self.started = [(n, q) for (n, q) in self.started if q is not p]

    def stop_all(self):
        for _, p in list(reversed(self.started)):
            self.stop(p, grace=2.0)


def session_pids(sid):
    """Every live process whose session id is sid (a process started by Procs and its children)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state (field 3); session is field 6.
        if int(fields[3]) == sid:
            pids.append(int(entry))
    return pids


def cpu_seconds(pids):
    """utime + stime of the processes (all their threads), in seconds."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return total / CLK_TCK


def thread_files(pids, name):
    """(thread id, /proc/PID/task/TID/NAME) for every thread of the processes."""
    for pid in pids:
        try:
            tids = os.listdir("/proc/%d/task" % pid)
        except OSError:
            continue
        for tid in tids:
            yield int(tid), "/proc/%d/task/%s/%s" % (pid, tid, name)


def run_delays(pids):
    """{thread id: ns} the processes' threads were runnable but kept waiting for a CPU (the second field of
    /proc/PID/task/TID/schedstat)."""
    out = {}
    for tid, path in thread_files(pids, "schedstat"):
        try:
            with open(path) as f:
                out[tid] = int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            continue
    return out


def run_delay_ms_between(a, b):
    """Run-queue wait between two run_delays() samples, in ms, over the threads alive at both."""
    return sum(b[t] - a[t] for t in a if t in b) / 1e6


def cpu_times():
    """{cpu index: (total, idle, irq + softirq) jiffies} from /proc/stat."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                v = [int(x) for x in line.split()[1:]]
                out[int(line.split()[0][3:])] = (sum(v[:8]), v[3] + v[4], v[5] + v[6])
    return out


def busy_between(a, b):
    """{cpu: busy fraction} between two cpu_times() samples."""
    res = {}
    for cpu in a:
        total = b[cpu][0] - a[cpu][0]
        res[cpu] = round(1 - (b[cpu][1] - a[cpu][1]) / total, 3) if total > 0 else 0.0
    return res


def irq_between(a, b):
    """{cpu: fraction of time in irq + softirq} between two cpu_times() samples (e.g. loopback delivery)."""
    res = {}
    for cpu in a:
        total = b[cpu][0] - a[cpu][0]
        res[cpu] = round((b[cpu][2] - a[cpu][2]) / total, 3) if total > 0 else 0.0
    return res


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            continue
    return total


def affinities(pids):
    """Set of Cpus_allowed_list values over every thread of the processes."""
    out = set()
    for _, path in thread_files(pids, "status"):
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        out.add(line.split()[1])
        except OSError:
            continue
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, timeout, proc=None):
    """True once 127.0.0.1:port accepts a TCP connection; False on timeout or if proc exited."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def tail(path, lines=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


def run_text(argv, timeout=30):
    """Output (stdout + stderr) of a short command, or '' when it cannot run."""
    try:
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        return r.stdout.decode(errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return ""
