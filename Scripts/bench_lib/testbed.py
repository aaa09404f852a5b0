"""The bench's testbed: everything a row measures through, and the helpers to watch processes.

Holds the process helpers (run a command with a timeout, free loopback ports,
kill and stop processes, CPU seconds, RSS and page faults from /proc, an RSS
sampler) and `Testbed`: a throwaway OpenSSH sshd, PostgreSQL with pgbench's
tables, an iperf3 server (and the busy row's four) and an echo server
(Scripts/lib.sh does the sshd and the cluster), the release build of tunnel
(or the --binary given) with its profiles, `tunnel up` and `ssh -N -L`
forwards, and the cleanup that stops all of it. `DelayedRelay` holds
connections back on their way to sshd (a slow path to a server).
"""
import copy
import glob
import hashlib
import json
import os
import platform
import random
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LIB_SH = os.path.join(ROOT, "Scripts", "lib.sh")
BENCH_LIB = os.path.join(ROOT, "Scripts", "bench_lib")
BUILT_TUNNEL = os.path.join(ROOT, ".build", "release", "tunnel")
CLK_TCK = os.sysconf("SC_CLK_TCK")
FD_MARGIN = 512
# The profile of the late-session context: its second SSH connection is held back this long ...
LATE_BY_S = 8
# ... against this connect_timeout (the integration tests' profiles use 5).
LATE_CONNECT_TIMEOUT = 5
# The busy row's tunnels (one supervisor) and iperf3 servers.
BUSY_N = 4


class BenchError(Exception):
    pass


def log(msg):
    print(f"==> {msg}", flush=True)


def warn(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


def run(cmd, timeout, check=True, env=None, input=None, cwd=None):
    """Runs cmd to completion with a timeout; returns CompletedProcess (text)."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                           input=input, cwd=cwd, stdin=None if input is not None else subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        raise BenchError(f"`{' '.join(map(str, cmd))}` did not finish within {timeout} s"
                         f"{': ' + tail(e.stderr) if e.stderr else ''}")
    except FileNotFoundError:
        raise BenchError(f"`{cmd[0]}` is not installed")
    if check and p.returncode != 0:
        raise BenchError(f"`{' '.join(map(str, cmd))}` exited {p.returncode}: {tail(p.stderr or p.stdout)}")
    return p


def tail(text, lines=6):
    """The last lines of a process's output, on one line."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    text = (text or "").strip()
    return " | ".join(text.splitlines()[-lines:])


def negotiated_pair(check_output):
    """(cipher, MAC) from `tunnel check`'s encryption line ("... aes128-ctr/hmac-sha2-256 (...)"), or None."""
    m = re.search(r"\b(aes\d+-ctr)/(hmac-sha2-\d+)\b", check_output)
    return m.groups() if m else None


def bash_lib(snippet, *args, timeout=120):
    """Runs a snippet with Scripts/lib.sh sourced ($1... are args)."""
    return run(["bash", "-c", f'set -e; . "{LIB_SH}"; {snippet}', "bench", *map(str, args)], timeout=timeout)


def listening(port):
    """True when something listens on TCP 127.0.0.1:port (from /proc/net/tcp, no connection made)."""
    want = f"0100007F:{port:04X}"
    any4 = f"00000000:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[3] == "0A" and parts[1] in (want, any4):
                    return True
    except OSError:
        pass
    return False


def wait_listening(port, timeout, proc=None, what="process"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if listening(port):
            return
        if proc is not None and proc.poll() is not None:
            raise BenchError(f"{what} exited ({proc.returncode}) before listening on 127.0.0.1:{port}")
        time.sleep(0.01)
    raise BenchError(f"{what} is not listening on 127.0.0.1:{port} after {timeout} s")


_given_ports = set()


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A free loopback port, like lib.sh's free_port, but below the ephemeral range when there is room:
    the tens of thousands of client connections this benchmark makes can then never take a port
    that a forward is about to listen on. Never hands out the same port twice in one run."""
    low = _ephemeral_low()
    candidates = []
    if low > 12000:
        candidates = random.sample(range(10000, low), 200)
    for port in candidates:
        if port in _given_ports:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        if not listening(port):
            _given_ports.add(port)
            return port
    for _ in range(100):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port not in _given_ports:
            _given_ports.add(port)
            return port
    raise BenchError("no free port")


def _stat_fields(pid):
    """Fields of /proc/PID/stat after the command name: [0] is the state (field 3)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return _stat_fields(pid)[0] != "Z"
    except OSError:
        return False


def kill_pid(pid, grace=3.0):
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if not pid or not alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.02)
    if alive(pid):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def stop_popen(p, grace=3.0):
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(grace)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass


def popen_logged(argv, logpath, mode="w", **kw):
    """Popen with stderr going to logpath (the parent's copy of the file is closed at once)."""
    with open(logpath, mode) as err:
        return subprocess.Popen(argv, stderr=err, **kw)


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    fields = _stat_fields(pid)
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def minor_faults(pid):
    """Minor page faults of a process so far (field 10 of /proc/PID/stat)."""
    return int(_stat_fields(pid)[7])


def status_kib(pid, key):
    """A KiB figure of /proc/PID/status, e.g. VmRSS."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def descendants(pid):
    """Every process below pid (children, their children, ...)."""
    children = {}
    for d in glob.glob("/proc/[0-9]*"):
        try:
            children.setdefault(int(_stat_fields(d[6:])[1]), []).append(int(d[6:]))
        except (OSError, ValueError, IndexError):
            continue
    out, stack = [], list(children.get(pid, []))
    while stack:
        p = stack.pop()
        out.append(p)
        stack += children.get(p, [])
    return out


def machine_cpu():
    """(busy, total) CPU seconds of the whole machine so far, all cores (/proc/stat);
    busy leaves out idle and iowait."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    total = sum(ticks[:8])   # user nice system idle iowait irq softirq steal (guest is inside user)
    return (total - ticks[3] - ticks[4]) / CLK_TCK, total / CLK_TCK


def cpu_of(pids):
    """{pid: CPU seconds} of the processes still there."""
    got = {}
    for p in pids:
        try:
            got[p] = cpu_seconds(p)
        except (OSError, IndexError, ValueError):
            pass
    return got


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def pids_with_arg(token, exe_name=None):
    """Processes whose command line contains token (and whose argv[0] basename is exe_name)."""
    found = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or argv == [b""]:
            continue
        if exe_name and os.path.basename(argv[0].decode(errors="replace")) != exe_name:
            continue
        if any(token.encode() in a for a in argv):
            pid = int(d[6:])
            if pid != os.getpid():
                found.append(pid)
    return found


def readline_timeout(stream, timeout):
    """One line of a pipe, or None when nothing came within `timeout` seconds."""
    r, _, _ = select.select([stream], [], [], timeout)
    return stream.readline().strip() if r else None


class PeriodicSampler(threading.Thread):
    """Calls `sample()` every `interval` seconds until `stop()`; a process that is gone
    (OSError from /proc) skips the sample."""

    def __init__(self, interval):
        super().__init__(daemon=True)
        self.interval = interval
        self.stop_event = threading.Event()

    def sample(self):
        raise NotImplementedError

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.sample()
            except OSError:
                pass
            self.stop_event.wait(self.interval)

    def stop(self):
        self.stop_event.set()
        self.join(2)


class Sampler(PeriodicSampler):
    """Samples VmRSS of a process every 50 ms."""

    def __init__(self, pid, interval=0.05):
        super().__init__(interval)
        self.pid = pid
        self.peak_kib = 0
        self.samples = 0

    def sample(self):
        self.peak_kib = max(self.peak_kib, status_kib(self.pid, "VmRSS"))
        self.samples += 1


class DelayedRelay:
    """Listens on 127.0.0.1:port and relays each client to 127.0.0.1:upstream,
    the k-th (from 0) only after delays[k] seconds: to the client, a server
    that accepted the connection and says nothing for that long."""

    def __init__(self, port, upstream, delays):
        self.upstream, self.delays = upstream, list(delays)
        self.stopped = threading.Event()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.accepted = 0
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def _accept_loop(self):
        while not self.stopped.is_set():
            try:
                if not select.select([self.sock], [], [], 0.2)[0]:
                    continue
                client, _ = self.sock.accept()
            except (OSError, ValueError):   # stop() closed the socket
                return
            delay = self.delays[self.accepted] if self.accepted < len(self.delays) else 0
            self.accepted += 1
            threading.Thread(target=self._serve, args=(client, delay), daemon=True).start()

    def _serve(self, client, delay):
        with client:
            if self.stopped.wait(delay):
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=10)
            except OSError:
                return
            with upstream:
                upstream.settimeout(None)
                self._copy_both_ways(client, upstream)

    def _copy_both_ways(self, a, b):
        """Until both sides have sent EOF, one fails, or the relay stops."""
        open_ = {a: b, b: a}
        while open_ and not self.stopped.is_set():
            ready = select.select(list(open_), [], [], 0.2)[0]
            for s in ready:
                try:
                    data = s.recv(65536)
                    if data:
                        open_[s].sendall(data)
                        continue
                    open_[s].shutdown(socket.SHUT_WR)
                except OSError:
                    return
                del open_[s]

    def stop(self):
        self.stopped.set()
        self.sock.close()


class Testbed:
    """The throwaway servers, tunnel's build and profiles, and the forwards through them.

    `params` are the run's sizes (rows.FULL or rows.SMOKE); `notes` is the
    report's list of notes, which stopping the supervisor may add to."""

    def __init__(self, args, params, notes):
        self.args = args
        self.p = params
        self.notes = notes
        self.work = None
        self.procs = []            # long-running Popen objects we own
        self.env = {k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"}
        self.supervisor_pids = set()

    # ---------------------------------------------------------------- setup
    def setup_tools(self):
        """Packages (Scripts/lib.sh install_packages), and where PostgreSQL's programs are."""
        if not self.args.no_install:
            log("checking packages (Scripts/lib.sh install_packages)")
            bash_lib("install_packages", timeout=900)
        else:
            os.makedirs("/run/sshd", exist_ok=True)
        for tool in ("sshd", "ssh", "ssh-keygen", "iperf3"):
            if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
                raise BenchError(f"{tool} is not installed (apt-get install openssh-server openssh-client iperf3)")
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: [int(x) for x in re.findall(r"\d+", d)])
        if not bins:
            raise BenchError("PostgreSQL is not installed (apt-get install postgresql postgresql-contrib)")
        self.pgbin = bins[-1]
        self.psql = os.path.join(self.pgbin, "psql")
        self.pgbench = os.path.join(self.pgbin, "pgbench")

    def build(self):
        """`swift build -c release --static-swift-stdlib` (with retries; the build Scripts/package uses), then a private copy
        of the binary; with --binary PATH, no build and a private copy of that executable (an older build, side by side)."""
        self.tunnel_source = os.path.abspath(self.args.binary) if self.args.binary else BUILT_TUNNEL
        if self.args.binary:
            if not os.path.isfile(self.tunnel_source) or not os.access(self.tunnel_source, os.X_OK):
                raise BenchError(f"--binary {self.args.binary}: not an executable file")
            log(f"tunnel binary: {self.tunnel_source} (--binary; no build)")
        elif not self.args.no_build:
            if not shutil.which("swift") and os.path.exists("/opt/swift/usr/bin/swift"):
                os.environ["PATH"] = "/opt/swift/usr/bin:" + os.environ["PATH"]
                self.env["PATH"] = os.environ["PATH"]
            if not shutil.which("swift"):
                raise BenchError("swift is not installed (expected at /opt/swift)")
            attempts = self.args.build_attempts
            for attempt in range(1, attempts + 1):
                log(f"swift build -c release --static-swift-stdlib (attempt {attempt} of {attempts})")
                try:
                    run(["swift", "build", "-c", "release", "--static-swift-stdlib"], timeout=1800, cwd=ROOT)
                    # tunnel's libssh2 (Patches/libssh2), in ../lib/tunnel where the binary looks first.
                    run(["bash", os.path.join(ROOT, "Scripts", "libssh2"), os.path.join(ROOT, ".build", "release")],
                        timeout=900, cwd=ROOT)
                    break
                except BenchError as e:
                    if attempt == attempts:
                        raise BenchError(f"the release build failed: {e}")
                    warn(f"build failed (sources may be mid-edit), retrying in 60 s: {e}")
                    time.sleep(60)
        if not os.access(self.tunnel_source, os.X_OK):
            raise BenchError(f"{BUILT_TUNNEL} does not exist: build it with `swift build -c release --static-swift-stdlib` "
                             f"(or drop --no-build)")
        # A private copy, so a rebuild during the run cannot swap the binary under us,
        # with the libssh2 beside it in ../lib/tunnel (its RUNPATH) when there is one.
        self.tunnel = os.path.join(self.work, "bin", "tunnel")
        os.makedirs(os.path.dirname(self.tunnel), exist_ok=True)
        shutil.copy2(self.tunnel_source, self.tunnel)
        bundled = os.path.join(os.path.dirname(os.path.realpath(self.tunnel_source)), "..", "lib", "tunnel", "libssh2.so.1")
        self.bundled_libssh2 = os.path.exists(bundled)
        if self.bundled_libssh2:
            os.makedirs(os.path.join(self.work, "lib", "tunnel"), exist_ok=True)
            shutil.copy2(bundled, os.path.join(self.work, "lib", "tunnel", "libssh2.so.1"))
        with open(self.tunnel, "rb") as f:
            self.tunnel_sha = hashlib.sha256(f.read()).hexdigest()
        self.tunnel_version = run([self.tunnel, "--version"], timeout=10, check=False).stdout.strip()

    def raise_fd_limit(self):
        """RLIMIT_NOFILE as high as the fan-out needs (sets fd_ok, and fd_problem when it cannot)."""
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = max(self.p["fan_n"], self.p.get("conns_n", 0)) + FD_MARGIN
        if hard == resource.RLIM_INFINITY:   # NOFILE cannot really be unlimited: fs.nr_open caps it
            try:
                hard = int(open("/proc/sys/fs/nr_open").read())
            except (OSError, ValueError):
                hard = 1 << 20
        if hard != resource.RLIM_INFINITY and hard < need and os.geteuid() == 0:
            try:  # root may raise the hard limit itself (CAP_SYS_RESOURCE), up to fs.nr_open
                resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))
                hard = need
            except (ValueError, OSError):
                pass
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError) as e:
            warn(f"cannot raise RLIMIT_NOFILE to {hard}: {e}")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.nofile = soft
        self.fd_ok = soft >= need
        if not self.fd_ok:
            self.fd_problem = (
                f"the open-file limit is {soft} (hard {hard}), but the fan-out needs about {need} file descriptors "
                f"in each of the client, the echo server, sshd and the forwarder ({need - FD_MARGIN} connections + "
                f"{FD_MARGIN}). Raise the hard limit and run again, e.g. as root `ulimit -Hn 65536; Scripts/bench`, "
                f"`prlimit --nofile=65536:65536 Scripts/bench`, docker run --ulimit nofile=65536:65536, "
                f"LimitNOFILE=65536 in a systemd unit, or `* hard nofile 65536` in /etc/security/limits.conf.")
            warn(self.fd_problem)

    def start_testbed(self):
        """The temporary directory and the paths in it."""
        self.work = tempfile.mkdtemp(prefix="tunnel-bench.")
        os.chmod(self.work, 0o755)   # the postgres user must reach its directory below
        self.sshd_dir = os.path.join(self.work, "sshd")
        os.makedirs(self.sshd_dir)
        self.key = os.path.join(self.sshd_dir, "id_ed25519")
        self.known_hosts = os.path.join(self.sshd_dir, "known_hosts")
        self.runtime = os.path.join(self.work, "run")
        self.config = os.path.join(self.work, "tunnels.toml")
        self.env.update(TUNNEL_CONFIG=self.config, TUNNEL_RUNTIME_DIR=self.runtime)

    def start_services(self):
        """sshd, PostgreSQL (with pgbench's tables), iperf3 -s and the echo server."""
        self.ssh_port = free_port()
        log(f"sshd on 127.0.0.1:{self.ssh_port} (Scripts/lib.sh start_sshd)")
        bash_lib('start_sshd "$1" "$2"', self.sshd_dir, self.ssh_port, timeout=60)
        wait_listening(self.ssh_port, 10, what="sshd")

        self.pg_port = free_port()
        self.pg_dir = os.path.join(self.work, "pg")
        log(f"PostgreSQL on 127.0.0.1:{self.pg_port} (Scripts/lib.sh start_postgres)")
        bash_lib('start_postgres "$1" "$2"', self.pg_dir, self.pg_port, timeout=180)
        self.pg_started = True
        log(f"pgbench -i -s {self.p['pg_scale']}")
        run([self.pgbench, "-i", "-q", "-s", str(self.p["pg_scale"]), "-h", "127.0.0.1", "-p", str(self.pg_port),
             "-U", "postgres", "postgres"], timeout=300, env=self.env)

        self.iperf_port = free_port()
        self.start_iperf()

        log("echo server (Scripts/bench_lib/echo_server.py)")
        self.echo_proc, self.echo_port = self.start_echo_server(0)
        # The context measurements' echo target, started when one needs it.
        self.paced_echo_port = free_port()
        self.paced_echo_proc = None

    def start_echo_server(self, port, *flags):
        """Scripts/bench_lib/echo_server.py on `port` (0: any); returns (process, port)."""
        p = popen_logged([sys.executable, os.path.join(BENCH_LIB, "echo_server.py"), str(port), *flags],
                         os.path.join(self.work, "echo.log"), "a", stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         text=True)
        self.procs.append(p)
        line = readline_timeout(p.stdout, 10)
        m = re.match(r"READY (\d+)", line or "")
        if not m:
            raise BenchError(f"the echo server did not start: {line!r}")
        return p, int(m.group(1))

    def start_paced_echo(self):
        """The echo server that stops reading while its writes back are stuck (--backpressure),
        on paced_echo_port, unless it runs already."""
        if self.paced_echo_proc is None:
            self.paced_echo_proc, _ = self.start_echo_server(self.paced_echo_port, "--backpressure")

    def start_iperf(self):
        log(f"iperf3 -s on 127.0.0.1:{self.iperf_port}")
        self.iperf_proc = popen_logged(
            ["iperf3", "-s", "-B", "127.0.0.1", "-p", str(self.iperf_port)], os.path.join(self.work, "iperf3.log"),
            "a", stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.procs.append(self.iperf_proc)
        wait_listening(self.iperf_port, 10, self.iperf_proc, "iperf3 -s")

    def restart_iperf(self):
        stop_popen(self.iperf_proc)
        try:
            self.start_iperf()
        except BenchError as e:
            warn(f"iperf3 server restart failed: {e}")

    def start_busy_iperf(self, i=None):
        """The busy row's iperf3 servers (`iperf3 -s` serves one test at a time, so one per busy
        tunnel) on busy_iperf_ports, or only the i-th; started for that row, stopped after it."""
        for j in ([i] if i is not None else range(len(self.busy_iperf_ports))):
            port = self.busy_iperf_ports[j]
            p = popen_logged(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(port)],
                             os.path.join(self.work, f"iperf3-busy{j + 1}.log"), "a",
                             stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            self.procs.append(p)
            self.busy_iperf_procs[j] = p
        for j in ([i] if i is not None else range(len(self.busy_iperf_ports))):
            wait_listening(self.busy_iperf_ports[j], 10, self.busy_iperf_procs[j], f"iperf3 -s (busy{j + 1})")

    def restart_busy_iperf(self, i):
        self.forget(self.busy_iperf_procs.get(i))
        try:
            self.start_busy_iperf(i)
        except BenchError as e:
            warn(f"iperf3 server (busy{i + 1}) restart failed: {e}")

    def stop_busy_iperf(self):
        for p in self.busy_iperf_procs.values():
            self.forget(p)
        self.busy_iperf_procs = {}

    def write_profiles(self):
        """tunnels.toml: one profile per forward the rows use (and a known_hosts line for the relay).

        Every row's profile is the default one, as users write it: host, port,
        user, identity, known_hosts and forward (plus `jump` for the jump rows,
        `lazy = true` for the lazy row). Tuned variants are context only:
        db_tuned (sessions = --sessions), and the late-session profile."""
        self.tports = {"db": free_port(), "iperf": free_port(), "echo": free_port()}
        extra = {}
        self.tports["db_tuned"] = free_port()
        targets = {"db": self.pg_port, "db_tuned": self.pg_port, "iperf": self.iperf_port, "echo": self.echo_port}
        extra["db_tuned"] = f"sessions = {self.args.sessions}\n"
        for i in range(1, self.p["idle_n"] + 1):
            self.tports[f"idle{i}"] = free_port()
            targets[f"idle{i}"] = self.echo_port
        # The context measurements: echo1 reaches the paced echo server over one
        # SSH connection; late reaches sshd through a DelayedRelay.
        self.tports["echo1"] = free_port()
        targets["echo1"] = self.paced_echo_port
        self.tports["late"] = free_port()
        targets["late"] = self.echo_port
        # lazy: a lazy profile to PostgreSQL, idle until the lazy row's first client.
        self.tports["lazydb"] = free_port()
        targets["lazydb"] = self.pg_port
        extra["lazydb"] = "lazy = true\n"
        # busy: BUSY_N default profiles, each to an iperf3 server of its own
        # (started by the busy row, Testbed.start_busy_iperf).
        self.busy_iperf_ports = [free_port() for _ in range(BUSY_N)]
        self.busy_iperf_procs = {}
        for i, port in enumerate(self.busy_iperf_ports, 1):
            self.tports[f"busy{i}"] = free_port()
            targets[f"busy{i}"] = port
        self.relay_port = free_port()
        ssh_ports = {"late": self.relay_port}
        extra["late"] = f"connect_timeout = {LATE_CONNECT_TIMEOUT}\nsessions = 2\n"
        # jump: iperf3 and PostgreSQL through one jump host (the bastion sshd,
        # started when a jump row runs), both forwards on one chain as one
        # `ssh -J` carries both -L.
        self.bastion_port = free_port()
        self.bastion_dir = os.path.join(self.work, "bastion")
        self.tports["jump"] = free_port()
        self.tports["jump_db"] = free_port()
        with open(self.known_hosts) as f:
            host_key = f.readline().split(" ", 1)[1]
        with open(self.known_hosts, "a") as f:
            f.write(f"[127.0.0.1]:{self.relay_port} {host_key}")
        user = run(["id", "-un"], timeout=5).stdout.strip()
        extra["jump"] = f'jump = "{user}@127.0.0.1:{self.bastion_port}"\n'
        forwards = {"jump": [f"{self.tports['jump']}:127.0.0.1:{self.iperf_port}",
                             f"{self.tports['jump_db']}:127.0.0.1:{self.pg_port}"]}
        targets["jump"] = self.iperf_port
        targets["jump_db"] = self.pg_port
        self.user = user
        self.targets = targets
        out = []
        for name, lport in self.tports.items():
            if name == "jump_db":
                continue
            fw = forwards.get(name, [f"{lport}:127.0.0.1:{targets[name]}"])
            out.append(self.profile_text(name, fw, ssh_ports.get(name, self.ssh_port), extra.get(name, "")))
        with open(self.config, "w") as f:
            f.write("\n".join(out))

    def learn_algorithms(self):
        """The cipher and MAC tunnel's default profile negotiates with the testbed's sshd
        (`tunnel check echo`), which `ssh -L` (same algorithms) and the bastion are then
        pinned to: tunnel picks its MAC by the CPU (hmac-sha2-256 first with SHA
        instructions, hmac-sha2-512 first without)."""
        out = self.tunnel_cmd("check", "echo", timeout=60, check=False)
        pair = negotiated_pair(out.stdout + out.stderr)
        if not pair:
            raise BenchError(f"`tunnel check echo` named no negotiated cipher/MAC: {tail(out.stdout + out.stderr)}")
        self.cipher, self.mac = pair
        log(f"tunnel negotiates {self.cipher} + {self.mac} here; ssh -L (same algorithms) is pinned to them")

    def profile_text(self, name, forwards, ssh_port=None, extra=""):
        """One [tunnels.NAME] table: the default profile (host, port, user, identity, known_hosts, forward) and `extra`."""
        fw = ", ".join(f'"{f}"' for f in forwards)
        return f"""[tunnels.{name}]
host = "127.0.0.1"
port = {ssh_port or self.ssh_port}
user = "{self.user}"
identity = "{self.key}"
known_hosts = "{self.known_hosts}"
forward = [{fw}]
{extra}"""

    def write_scale_profiles(self, n):
        """A config of its own (scale.toml) with n default profiles scale1..scaleN to the echo server;
        returns (the aside testbed that uses it, the names)."""
        aside = self.aside("scale")
        aside.config = os.path.join(self.work, "scale.toml")
        aside.env["TUNNEL_CONFIG"] = aside.config
        names = [f"scale{i}" for i in range(1, n + 1)]
        with open(aside.config, "w") as f:
            f.write("\n".join(self.profile_text(nm, [f"{free_port()}:127.0.0.1:{self.echo_port}"]) for nm in names))
        return aside, names

    def start_bastion(self):
        """The jump rows' bastion: a second sshd (Scripts/lib.sh start_sshd, as Scripts/jumpbench
        starts its own) offering only the cipher and MAC tunnel negotiates (learn_algorithms),
        taking our key; its host key
        goes into known_hosts, and an ssh_config for `ssh -J` pins the same algorithms on both hops
        (-J does not pass -c/-m to the jump's ssh)."""
        if getattr(self, "bastion_started", False):
            return
        os.makedirs(self.bastion_dir, exist_ok=True)
        log(f"sshd (bastion) on 127.0.0.1:{self.bastion_port} (Scripts/lib.sh start_sshd)")
        bash_lib('start_sshd "$1" "$2" "$3"', self.bastion_dir, self.bastion_port,
                 f"Ciphers {self.cipher}\nMACs {self.mac}", timeout=60)
        self.bastion_started = True
        wait_listening(self.bastion_port, 10, what="sshd (bastion)")
        shutil.copy(self.key + ".pub", os.path.join(self.bastion_dir, "authorized_keys"))
        with open(os.path.join(self.bastion_dir, "known_hosts")) as f, open(self.known_hosts, "a") as kh:
            kh.write(f.read())
        self.jump_ssh_config = os.path.join(self.work, "ssh_config_jump")
        with open(self.jump_ssh_config, "w") as f:
            f.write(f"""Host bench-bastion
  HostName 127.0.0.1
  Port {self.bastion_port}
Host bench-target
  HostName 127.0.0.1
  Port {self.ssh_port}
Host *
  User {self.user}
  IdentityFile {self.key}
  IdentitiesOnly yes
  UserKnownHostsFile {self.known_hosts}
  StrictHostKeyChecking yes
  BatchMode yes
  Ciphers {self.cipher}
  MACs {self.mac}
  Compression no
  ControlPath none
  ExitOnForwardFailure yes
  LogLevel ERROR
""")

    def sshd_pids(self):
        """The sshd processes below the rows' sshd listener (one or two per SSH connection)."""
        try:
            with open(os.path.join(self.sshd_dir, "sshd.pid")) as f:
                return descendants(int(f.read().strip()))
        except (OSError, ValueError):
            return []

    # ------------------------------------------------------------ forwarders
    def tunnel_cmd(self, *args, timeout=60, check=True):
        return run([self.tunnel, *args], timeout=timeout, env=self.env, check=check)

    def tunnel_ls(self):
        """`tunnel ls --json`, parsed (or its first 2,000 characters when it is not JSON)."""
        ls = self.tunnel_cmd("ls", "--json", timeout=30, check=False)
        try:
            return json.loads(ls.stdout)
        except ValueError:
            return ls.stdout.strip()[:2000]

    def supervisor_pid(self):
        try:
            with open(os.path.join(self.runtime, "supervisor.pid")) as f:
                pid = int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if alive(pid) else None

    def tunnel_up(self, *names, timeout=60):
        """`tunnel up NAMES`; returns the supervisor's pid."""
        self.tunnel_cmd("up", *names, "--timeout", str(timeout), timeout=timeout + 30)
        pid = self.supervisor_pid()
        if pid is None:
            raise BenchError(f"`tunnel up {' '.join(names)}` succeeded but no supervisor pid in {self.runtime}/supervisor.pid")
        self.supervisor_pids.add(pid)
        return pid

    def tunnel_down(self, *names):
        if names:
            self.tunnel_cmd("down", *names, timeout=60, check=False)
        else:
            self.tunnel_cmd("down", "--all", timeout=60, check=False)

    def stop_supervisor(self):
        """Everything down (so a new supervisor restores nothing), then `tunnel daemon stop`."""
        pid = self.supervisor_pid()
        if pid is None:
            return
        self.tunnel_down()
        p = self.tunnel_cmd("daemon", "stop", timeout=30, check=False)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if alive(pid):
            warn(f"`tunnel daemon stop` left the supervisor (pid {pid}) running ({tail(p.stderr or p.stdout)}); killing it")
            self.notes.append(f"tunnel daemon stop did not stop supervisor pid {pid}")
            kill_pid(pid)

    def ssh_argv(self, variant, lport, target, fork=False):
        """`ssh -N -L` to 127.0.0.1:target; variant "ssh" pins tunnel's algorithms, "ssh_default" does not."""
        argv = ["ssh"]
        argv += ["-f"] if fork else []
        argv += ["-N", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
                 "-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "Compression=no",
                 "-o", "IdentitiesOnly=yes", "-o", "ExitOnForwardFailure=yes", "-o", "ControlPath=none",
                 "-o", "LogLevel=ERROR"]
        if variant == "ssh":
            argv += ["-c", self.cipher, "-m", self.mac]
        argv += ["-i", self.key, "-p", str(self.ssh_port), "-L", f"127.0.0.1:{lport}:127.0.0.1:{target}",
                 f"{self.user}@127.0.0.1"]
        return argv

    def spawn_ssh(self, variant, target, lport=None):
        """Starts `ssh -N -L` (stderr to ssh-PORT.err) without waiting; returns (process, local port, stderr path)."""
        lport = lport or free_port()
        errpath = os.path.join(self.work, f"ssh-{lport}.err")
        p = popen_logged(self.ssh_argv(variant, lport, target), errpath, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, env=self.env)
        self.procs.append(p)
        return p, lport, errpath

    def start_ssh(self, variant, target, lport=None):
        """`ssh -N -L`, once it listens; returns (process, local port)."""
        p, lport, errpath = self.spawn_ssh(variant, target, lport)
        try:
            wait_listening(lport, 20, p, f"ssh -L ({variant})")
        except BenchError as e:
            stop_popen(p)
            with open(errpath) as f:
                raise BenchError(f"{e}: {tail(f.read())}")
        return p, lport

    def aside(self, name):
        """The same testbed with a supervisor of its own (runtime directory run-NAME), so what
        runs there stays out of the rows' supervisor log; processes and notes are shared."""
        other = copy.copy(self)
        other.runtime = os.path.join(self.work, f"run-{name}")
        other.env = dict(self.env, TUNNEL_RUNTIME_DIR=other.runtime)
        return other

    def forget(self, p):
        """Stops a process started here and drops it from the ones cleanup stops."""
        stop_popen(p)
        if p in self.procs:
            self.procs.remove(p)

    class Forward:
        """`with testbed.forward(variant, name) as (local_port, forwarder_pid)`."""

        def __init__(self, testbed, variant, name, fresh=False):
            self.tb, self.variant, self.name, self.fresh = testbed, variant, name, fresh
            self.proc = None

        def __enter__(self):
            tb = self.tb
            if self.variant == "tunnel":
                if self.fresh:
                    tb.stop_supervisor()
                pid = tb.tunnel_up(self.name)
                return tb.tports[self.name], pid
            self.proc, lport = tb.start_ssh(self.variant, tb.targets[self.name])
            return lport, self.proc.pid

        def __exit__(self, *exc):
            if self.variant == "tunnel":
                self.tb.tunnel_down(self.name)
            else:
                self.tb.forget(self.proc)
            return False

    def forward(self, variant, name, fresh=False):
        """A forward through tunnel (profile `name`; `fresh`: in a new supervisor) or a new ssh -L to its target."""
        return Testbed.Forward(self, variant, name, fresh)

    # ------------------------------------------------------------ afterwards
    def scan_supervisor_log(self):
        """Warning/error lines of the supervisor's log, and the algorithms its links negotiated."""
        path = os.path.join(self.runtime, "supervisor.log")
        try:
            with open(path, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return [], []
        bad = [l for l in lines if re.search(r" (warning|error|critical|fatal): ", l, re.I)]
        algos = sorted({re.sub(r" session=\d+/\d+$", "", l.rsplit(";", 1)[1].strip())
                        for l in lines if " info: up: " in l and ";" in l})
        return bad, algos

    def machine(self):
        """What the figures were measured on: CPU, kernel, OpenSSH, libssh2, PostgreSQL, tunnel's commit, limits."""
        model = "unknown"
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        model = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        ssh_v = run(["ssh", "-V"], timeout=10, check=False)
        libssh2 = run(["dpkg-query", "-W", "libssh2-1"], timeout=10, check=False).stdout.strip().replace("\t", " ")
        git = run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], timeout=10, check=False).stdout.strip()
        dirty = run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--", "Sources", "Package.swift"],
                    timeout=10, check=False).stdout.strip()
        try:
            somaxconn = open("/proc/sys/net/core/somaxconn").read().strip()
        except OSError:
            somaxconn = "?"
        return {
            "cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
            "openssh": (ssh_v.stderr or ssh_v.stdout).strip(),
            "libssh2": ((libssh2 or "libssh2-1 not installed")
                        + (" (tunnel's build of its source, with Patches/libssh2)" if self.bundled_libssh2 else " (the system's)")),
            "postgresql": os.path.basename(os.path.dirname(self.pgbin)),
            "tunnel_commit": (f"--binary {self.tunnel_source}, commit unknown" if self.args.binary
                              else git + (" + uncommitted changes in Sources" if dirty else "")),
            "bench_commit": git,
            "nofile": self.nofile, "somaxconn": somaxconn,
        }

    def cleanup(self):
        """Stops everything started (supervisors, ssh, servers, PostgreSQL) and removes the directory unless --keep."""
        if self.work is None:
            return
        try:
            if hasattr(self, "tunnel") and os.path.exists(self.tunnel):
                run([self.tunnel, "daemon", "stop"], timeout=20, env=self.env, check=False)
        except BenchError:
            pass
        for pid in set(self.supervisor_pids) | ({self.supervisor_pid()} - {None}):
            kill_pid(pid)
        for pid in pids_with_arg(self.runtime, "tunnel"):   # anything started with our runtime dir
            kill_pid(pid)
        for p in self.procs:
            stop_popen(p, grace=2)
        for pid in pids_with_arg(self.key, "ssh"):   # e.g. forked ssh -f
            kill_pid(pid)
        try:
            with open(os.path.join(self.sshd_dir, "sshd.pid")) as f:
                kill_pid(int(f.read().strip()))
        except (OSError, ValueError, AttributeError):
            pass
        if getattr(self, "bastion_started", False):
            try:
                with open(os.path.join(self.bastion_dir, "sshd.pid")) as f:
                    kill_pid(int(f.read().strip()))
            except (OSError, ValueError):
                pass
        if getattr(self, "pg_started", False):
            try:
                bash_lib('stop_postgres "$1"', self.pg_dir, timeout=60)
            except BenchError as e:
                warn(f"stopping PostgreSQL: {e}")
        if self.args.keep:
            print(f"kept {self.work} (logs: sshd/sshd.log, run/supervisor.log, ssh-*.err, pg/log)")
        else:
            shutil.rmtree(self.work, ignore_errors=True)
        self.work = None
