"""The measurements: one function per row of the table, and the context measured beside them.

Each row function takes the Testbed (and the Report, for the context it
gathers on the way) and returns {variant: (value, detail)} for tunnel, ssh
(same algorithms) and ssh_default; `measure` runs the selected rows in table
order and files a result record per row with report.record. Context (no
target): direct runs without forwarding, tunnel with one SSH connection, the
fan-out burst, the libcrypto ceiling, and three figures the integration
tests once asserted (page faults during a bulk transfer, RSS with a stalled
client and idle connections, `tunnel up` waiting out connect_timeout).
FULL and SMOKE are the sizes of a full run and of --smoke.
"""
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

from bench_lib import report
from bench_lib.testbed import (BENCH_LIB, LATE_BY_S, LATE_CONNECT_TIMEOUT, ROOT, BenchError, DelayedRelay, Sampler,
                               alive, cpu_seconds, free_port, kill_pid, log, minor_faults, pids_with_arg,
                               popen_logged, run, status_kib, tail, wait_listening, warn)

# query_rounds, iperf_rounds: the query and throughput rows are the median of
# that many interleaved samples per side (tunnel, ssh -L, ssh -L, tunnel, ...):
# this VM's noise moves one sample by more than the 20 % the targets ask for
# (ssh -L alone measured 2.5 to 3.8 Gbit/s in back-to-back 5 s runs).
FULL = dict(iperf_t=10, iperf_rounds=3, pg_t=15, pg_scale=5, query_rounds=3, fan_n=5000, fan_size=65536, fan_timeout=30,
            idle_n=20, idle_s=60, start_reps=5, direct=True)
SMOKE = dict(iperf_t=1, iperf_rounds=2, pg_t=2, pg_scale=5, query_rounds=2, fan_n=200, fan_size=65536, fan_timeout=60,
             idle_n=3, idle_s=3, start_reps=1, direct=False)

FANOUT_PACED = 100
# Direct runs (no forwarding) are context only: shorter, to keep a full run under 10 minutes.
CONTEXT_T = 4
MIB = 1 << 20


def order(k):
    """tunnel and ssh -L alternate from row to row (and from repetition to repetition)."""
    return ["tunnel", "ssh", "ssh_default"] if k % 2 == 0 else ["ssh", "tunnel", "ssh_default"]


def interleaved(tb, k, rounds, profile, unit, what, measure_one):
    """`rounds` samples per variant in alternating order (the second
    reference gets one); per variant the median value, with the detail of
    the sample nearest it and, over several rounds, every sample."""
    samples = {}
    for r in range(rounds):
        for v in order(k + r):
            if v == "ssh_default" and r > 0:
                continue
            log(f"{what} through {v}" + (f" (round {r + 1} of {rounds})" if rounds > 1 else ""))
            with tb.forward(v, profile) as (port, _):
                samples.setdefault(v, []).append(measure_one(port))
    res = {}
    for v, got in samples.items():
        value = statistics.median(s[0] for s in got)
        detail = min(got, key=lambda s: abs(s[0] - value))[1]
        if len(got) > 1:
            detail = dict(detail, median_of=len(got), **{f"samples_{unit}": [round(s[0], 1) for s in got]})
        res[v] = (value, detail)
    return res


# ------------------------------------------------------------- throughput
def iperf(tb, port, reverse, t=None):
    """One iperf3 run to 127.0.0.1:port; returns (received Mbit/s, detail)."""
    t = t or tb.p["iperf_t"]
    cmd = ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(t), "-J", "--connect-timeout", "10000"]
    if reverse:
        cmd.append("-R")
    try:
        p = run(cmd, timeout=t + 40, check=False)
    except BenchError:
        tb.restart_iperf()
        raise
    try:
        data = json.loads(p.stdout)
    except ValueError:
        tb.restart_iperf()
        raise BenchError(f"iperf3 printed no JSON (exit {p.returncode}): {tail(p.stderr or p.stdout)}")
    if data.get("error") or p.returncode != 0:
        tb.restart_iperf()
        raise BenchError(f"iperf3: {data.get('error') or tail(p.stderr)}")
    end = data["end"]
    rcv = end["sum_received"]["bits_per_second"] / 1e6
    snd = end["sum_sent"]["bits_per_second"] / 1e6
    return rcv, {"received_mbit_s": round(rcv, 1), "sent_mbit_s": round(snd, 1),
                 "retransmits": end["sum_sent"].get("retransmits"),
                 "receiver": "client (-R)" if reverse else "server"}


def throughput(tb, rep, row, k):
    """Rows up and down: iperf3 (down with -R) through each variant; direct iperf3 as context in a full run."""
    reverse = row == "down"
    res = interleaved(tb, k, tb.p["iperf_rounds"], "iperf", "mbit_s",
                      f"{row}: iperf3{' -R' if reverse else ''} -t {tb.p['iperf_t']}",
                      lambda port: iperf(tb, port, reverse))
    if tb.p["direct"]:
        log(f"{row}: iperf3 direct, {CONTEXT_T} s (context)")
        rep.context[f"{row}_direct"] = iperf(tb, tb.iperf_port, reverse, CONTEXT_T)[1]
    return res


# ---------------------------------------------------------------- pgbench
def pgbench(tb, port, connect_each, t=None):
    """pgbench -S (-C: a new connection per transaction) against 127.0.0.1:port; returns (tps, detail)."""
    t = t or tb.p["pg_t"]
    cmd = [tb.pgbench, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-S"]
    cmd += ["-C", "-c", "4", "-j", "2"] if connect_each else ["-c", "8", "-j", "2"]
    cmd += ["-T", str(t), "postgres"]
    env = dict(tb.env, PGCONNECT_TIMEOUT="10")
    p = run(cmd, timeout=t + 60, check=False, env=env)
    out = p.stdout + "\n" + p.stderr
    m = (re.search(r"^tps = ([0-9.]+) \(without initial connection time\)", out, re.M)
         or re.search(r"^tps = ([0-9.]+)", out, re.M))
    if p.returncode != 0 or not m:
        raise BenchError(f"pgbench exited {p.returncode}: {tail(p.stderr or p.stdout)}")
    detail = {"tps": float(m.group(1))}
    for key, rx in (("transactions", r"number of transactions actually processed: (\d+)"),
                    ("failed", r"number of failed transactions: (\d+)"),
                    ("latency_ms", r"latency average = ([0-9.]+) ms"),
                    ("connection_ms", r"average connection time = ([0-9.]+) ms")):
        mm = re.search(rx, out)
        if mm:
            detail[key] = float(mm.group(1))
    if detail.get("failed"):
        raise BenchError(f"pgbench: {int(detail['failed'])} failed transactions")
    return detail["tps"], detail


def query_or_storm(tb, rep, row, k):
    """Rows query (8 clients, connected once) and storm (-C: a connection per transaction);
    in a full run also direct and, for query, through tunnel with sessions = 1, as context."""
    storm = row == "storm"
    res = interleaved(tb, k, 1 if storm else tb.p["query_rounds"], "db", "tps",
                      f"{row}: pgbench -S{' -C -c 4' if storm else ' -c 8'} -j 2 -T {tb.p['pg_t']}",
                      lambda port: pgbench(tb, port, storm))
    if tb.p["direct"] and tb.args.sessions > 1 and not storm:
        log(f"{row}: pgbench through tunnel with sessions = 1 (context)")
        with tb.forward("tunnel", "db1") as (port, _):
            rep.context[f"{row}_one_session"] = pgbench(tb, port, storm)[1]
    if tb.p["direct"]:
        log(f"{row}: pgbench direct, {CONTEXT_T} s (context)")
        rep.context[f"{row}_direct"] = pgbench(tb, tb.pg_port, storm, CONTEXT_T)[1]
    return res


# ---------------------------------------------------------- fan-out, memory
def fanout_one(tb, variant, paced=0):
    """fan_n connections through a fresh forwarder (Scripts/bench_lib/fanout_client.py), with its RSS and CPU."""
    n = tb.p["fan_n"]
    # Paced, both sides take about 20 s for 5,000: its deadline must not decide the outcome.
    timeout = tb.p["fan_timeout"] * (3 if paced else 1)
    with tb.forward(variant, "echo", fresh=True) as (port, pid):
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")   # reset VmHWM
        except OSError:
            pass
        cpu0 = cpu_seconds(pid)
        sampler = Sampler(pid)
        sampler.start()
        try:
            p = run([sys.executable, os.path.join(BENCH_LIB, "fanout_client.py"), "--port", str(port),
                     "--connections", str(n), "--size", str(tb.p["fan_size"]),
                     "--timeout", str(timeout)] + (["--paced", str(paced)] if paced else []),
                    timeout=timeout + 90, check=False)
        finally:
            sampler.stop()
        if not alive(pid):
            raise BenchError(f"the forwarding process (pid {pid}) died during the fan-out: {tail(p.stderr)}")
        hwm = status_kib(pid, "VmHWM")
        rss_now = status_kib(pid, "VmRSS")
        cpu = cpu_seconds(pid) - cpu0
        try:
            data = json.loads(p.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"the fan-out client failed (exit {p.returncode}): {tail(p.stderr or p.stdout)}")
        data["peak_rss_mib"] = round(max(hwm, sampler.peak_kib) / 1024, 2)
        data["vmhwm_mib"] = round(hwm / 1024, 2)
        data["sampled_vmrss_max_mib"] = round(sampler.peak_kib / 1024, 2)
        data["rss_after_mib"] = round(rss_now / 1024, 2)
        data["rss_samples"] = sampler.samples
        data["forwarder_cpu_s"] = round(cpu, 3)
        data["forwarder_pid"] = pid
        if variant == "tunnel":
            data["tunnel_ls"] = tb.tunnel_ls()
        return data


def fanout(tb, rep, k):
    """The fan-out row's data (the memory row reads it too): N connections
    open together, each echoing its bytes, the client letting at most
    FANOUT_PACED wait for their first echoed byte (as a pool or a load
    generator with a connect limit does). Unpaced, all N SYNs at once overrun
    ssh -L's fixed listen backlog (128) and the kernel drops thousands of its
    connections, so "0 failures on both" could never hold; that burst is
    measured as context. Returns {variant: fan-out client data}."""
    if not tb.fd_ok:
        raise BenchError(tb.fd_problem)
    res = {}
    for v in order(k):
        log(f"fanout: {tb.p['fan_n']} connections x {tb.p['fan_size'] // 1024} KiB echo through {v}, at most "
            f"{FANOUT_PACED} awaiting their first byte, all held open (fresh {'supervisor' if v == 'tunnel' else 'ssh process'})")
        d = fanout_one(tb, v, paced=FANOUT_PACED)
        log(f"fanout: {v}: {d['wall_s']:.2f} s, {d['failures']} failures, {d.get('peak_open')} open at once, "
            f"peak RSS {d['peak_rss_mib']:.1f} MiB" + (f" ({'; '.join(d['examples'][:2])})" if d["failures"] else ""))
        res[v] = d
    burst = {}
    for v in order(k)[:2]:
        log(f"fanout: burst (all {tb.p['fan_n']} at once) through {v} (context)")
        d = fanout_one(tb, v)
        burst[v] = {key: d.get(key) for key in ("wall_s", "failures", "failures_by_kind", "ok", "peak_rss_mib", "examples")}
        log(f"fanout: burst {v}: {d['wall_s']:.2f} s, {d['failures']} failures")
    rep.context["fanout_burst"] = burst
    return res


def fanout_row(data):
    """Row fanout from the fan-out data: wall time per variant."""
    return {v: (d["wall_s"], d) for v, d in data.items()}


def memory_row(data):
    """Row memory from the fan-out data: the forwarder's peak RSS per variant."""
    return {v: (d["peak_rss_mib"], {"vmhwm_mib": d["vmhwm_mib"],
                                    "sampled_vmrss_max_mib": d["sampled_vmrss_max_mib"],
                                    "rss_after_mib": d["rss_after_mib"]}) for v, d in data.items()}


# ------------------------------------------------------------------- idle
def idle(tb):
    """Row idle: CPU seconds of idle_n tunnels (one supervisor) and of idle_n ssh -L of each kind, over idle_s."""
    n, secs = tb.p["idle_n"], tb.p["idle_s"]
    names = [f"idle{i}" for i in range(1, n + 1)]
    log(f"idle: {n} tunnels (one `tunnel up`), {n} ssh -N -L and {n} ssh -N -L (default algorithms), "
        f"{secs} s without traffic")
    tb.stop_supervisor()
    tb.tunnel_up(*names, timeout=60)
    pid = tb.supervisor_pid()
    ssh = {"ssh": [], "ssh_default": []}
    try:
        for v in ("ssh", "ssh_default"):
            for _ in names:
                p, lport, _ = tb.spawn_ssh(v, tb.echo_port)
                ssh[v].append((p, lport))
        for v in ssh:
            for p, lport in ssh[v]:
                wait_listening(lport, 30, p, f"ssh -L ({v})")
        time.sleep(2)
        c0 = {"tunnel": cpu_seconds(pid)}
        for v in ssh:
            c0[v] = sum(cpu_seconds(p.pid) for p, _ in ssh[v])
        time.sleep(secs)
        if not alive(pid):
            raise BenchError("the supervisor died during the idle window")
        c1 = {"tunnel": cpu_seconds(pid)}
        for v in ssh:
            dead = [p.pid for p, _ in ssh[v] if p.poll() is not None]
            if dead:
                raise BenchError(f"{len(dead)} ssh processes ({v}) exited during the idle window")
            c1[v] = sum(cpu_seconds(p.pid) for p, _ in ssh[v])
        ls = tb.tunnel_ls()
        res = {}
        for v in report.VARIANTS:
            d = {"cpu_s": round(c1[v] - c0[v], 3), "tunnels": n, "window_s": secs}
            if v == "tunnel":
                d["rss_mib"] = round(status_kib(pid, "VmRSS") / 1024, 2)
                d["tunnel_ls"] = ls
            else:
                d["rss_mib_sum"] = round(sum(status_kib(p.pid, "VmRSS") for p, _ in ssh[v]) / 1024, 2)
            res[v] = (c1[v] - c0[v], d)
        return res
    finally:
        for v in ssh:
            for p, _ in ssh[v]:
                p.terminate()
            for p, _ in ssh[v]:
                tb.forget(p)
        tb.tunnel_down(*names)


# ------------------------------------------------------------------ start
def psql_until_ok(tb, port, started, proc, timeout=30, errpath=None):
    """Runs psql in a tight loop until `select 1` succeeds; returns (seconds since `started`, attempts)."""
    cmd = [tb.psql, "-X", "-q", "-At", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-d", "postgres",
           "-c", "select 1"]
    env = dict(tb.env, PGCONNECT_TIMEOUT="5")
    deadline = started + timeout
    attempts = 0
    last = ""
    while time.monotonic() < deadline:
        attempts += 1
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10, env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            last = "psql timed out"
            continue
        if p.returncode == 0 and p.stdout.strip() == "1":
            return time.monotonic() - started, attempts
        last = p.stderr.strip()
        if proc is not None and proc.poll() not in (None, 0):
            if errpath:
                with open(errpath, errors="replace") as f:
                    err = f.read()
            else:
                err = proc.stderr.read() if proc.stderr else ""
            raise BenchError(f"`{' '.join(proc.args[:3])} ...` exited {proc.returncode}: {tail(err)}")
    raise BenchError(f"psql did not succeed within {timeout} s ({attempts} attempts): {tail(last)}")


def start_tunnel_once(tb, cold):
    """`tunnel up db` until psql works through it; cold: with no supervisor running."""
    if cold:
        tb.stop_supervisor()
    else:
        if tb.supervisor_pid() is None:
            tb.tunnel_up("echo")   # any tunnel: gets a supervisor running
            tb.tunnel_down("echo")
        tb.tunnel_down("db")
    port = tb.tports["db"]
    t0 = time.monotonic()
    proc = subprocess.Popen([tb.tunnel, "up", "db", "--timeout", "30"], env=tb.env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    tb.procs.append(proc)
    try:
        elapsed, attempts = psql_until_ok(tb, port, t0, proc)
        try:
            out, err = proc.communicate(timeout=40)
        except subprocess.TimeoutExpired:
            raise BenchError("`tunnel up db` did not return within 40 s although psql works through it")
        if proc.returncode != 0:
            raise BenchError(f"`tunnel up db` exited {proc.returncode}: {tail(err)}")
        up_returned = time.monotonic() - t0
    finally:
        tb.forget(proc)
    pid = tb.supervisor_pid()
    if pid:
        tb.supervisor_pids.add(pid)
    tb.tunnel_down("db")
    return elapsed, {"psql_attempts": attempts, "tunnel_up_returned_ms": round(up_returned * 1000, 1)}


def start_ssh_once(tb, variant):
    """`ssh -f -N -L` until psql works through it."""
    lport = free_port()
    argv = tb.ssh_argv(variant, lport, tb.pg_port, fork=True)
    errpath = os.path.join(tb.work, f"ssh-{lport}.err")
    t0 = time.monotonic()
    proc = popen_logged(argv, errpath, env=tb.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, text=True)
    tb.procs.append(proc)
    try:
        elapsed, attempts = psql_until_ok(tb, lport, t0, proc, errpath=errpath)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            raise BenchError("`ssh -f` did not go to the background within 20 s")
    finally:
        tb.forget(proc)
        # the forked ssh: the only ssh with this exact -L
        for pid in pids_with_arg(f"127.0.0.1:{lport}:127.0.0.1:{tb.pg_port}", "ssh"):
            kill_pid(pid)
    return elapsed, {"psql_attempts": attempts}


def start(tb):
    """Row start: from starting the forwarder to the first `select 1` through it (median of start_reps);
    tunnel's warm start (supervisor already running) goes in its detail."""
    reps = tb.p["start_reps"]
    times = {v: [] for v in report.VARIANTS}
    details = {v: [] for v in report.VARIANTS}
    warm = []
    for r in range(reps):
        for v in order(r):
            log(f"start: repetition {r + 1} of {reps}: {'tunnel up db (cold, no supervisor)' if v == 'tunnel' else v + ' -f -N -L'}")
            t, d = start_tunnel_once(tb, cold=True) if v == "tunnel" else start_ssh_once(tb, v)
            times[v].append(t * 1000)
            details[v].append(d)
    for r in range(reps):
        log(f"start: repetition {r + 1} of {reps}: tunnel up db (warm, supervisor running)")
        t, d = start_tunnel_once(tb, cold=False)
        warm.append(t * 1000)
    res = {}
    for v in report.VARIANTS:
        res[v] = (statistics.median(times[v]), {"median_ms": round(statistics.median(times[v]), 1),
                                                "runs_ms": [round(x, 1) for x in times[v]],
                                                "runs": details[v]})
    res["tunnel"][1]["warm_median_ms"] = round(statistics.median(warm), 1)
    res["tunnel"][1]["warm_runs_ms"] = [round(x, 1) for x in warm]
    return res


# ------------------------------------------------------------------ lazy
def lazy_first_once(tb):
    """A lazy tunnel brought up (idle, no SSH connection), then its first client:
    from that client's connect to the first `select 1` through it."""
    tb.tunnel_down("lazydb")
    tb.tunnel_up("lazydb")
    listed = tb.tunnel_ls()
    state = next((t.get("state") for t in listed if t.get("name") == "lazydb"), None) if isinstance(listed, list) else None
    if state != "idle":
        raise BenchError(f"lazydb is {state!r} after `tunnel up`, not idle")
    t0 = time.monotonic()
    try:
        elapsed, attempts = psql_until_ok(tb, tb.tports["lazydb"], t0, None)
        # The same query with the connection now up: what the first client paid extra is the difference.
        t1 = time.monotonic()
        warm, _ = psql_until_ok(tb, tb.tports["lazydb"], t1, None)
    finally:
        tb.tunnel_down("lazydb")
    return elapsed, {"psql_attempts": attempts, "warm_ms": round(warm * 1000, 1), "extra_ms": round((elapsed - warm) * 1000, 1)}


def lazy(tb):
    """Row lazy: a lazy tunnel's first client, from its connect to the first `select 1`
    (the SSH connection opens meanwhile), against `ssh -f -N -L` started fresh, from
    starting ssh to the first `select 1` (median of start_reps each)."""
    reps = tb.p["start_reps"]
    times = {v: [] for v in report.VARIANTS}
    details = {v: [] for v in report.VARIANTS}
    for r in range(reps):
        for v in order(r):
            log(f"lazy: repetition {r + 1} of {reps}: {'first client of an idle lazy tunnel' if v == 'tunnel' else v + ' -f -N -L'}")
            t, d = lazy_first_once(tb) if v == "tunnel" else start_ssh_once(tb, v)
            times[v].append(t * 1000)
            details[v].append(d)
    return {v: (statistics.median(times[v]), {"median_ms": round(statistics.median(times[v]), 1),
                                              "runs_ms": [round(x, 1) for x in times[v]], "runs": details[v]})
            for v in report.VARIANTS}


# ---------------------------------------------------------------- context
def crypto_ceiling(tb, rep):
    """libcrypto's own speed in libssh2's 16-byte-call pattern, plain and
    through tunnel's batched keystream, vs OpenSSH's bulk calls: the
    evidence for what bounds the throughput rows."""
    src = os.path.join(BENCH_LIB, "crypto_ceiling.c")
    keystream = os.path.join(ROOT, "Sources", "CCryptoCalls")
    exe = os.path.join(tb.work, "crypto_ceiling")
    cc = shutil.which("gcc") or shutil.which("cc") or shutil.which("clang")
    if not cc:
        rep.notes.append("no C compiler: the libcrypto ceiling was not measured")
        return
    p = run([cc, "-O2", "-o", exe, src, os.path.join(keystream, "ctr_keystream.c"), os.path.join(keystream, "libcrypto_next.c"), "-I", os.path.join(keystream, "include"),
             "-lssh2", "-lcrypto", "-Wno-deprecated-declarations"], timeout=120, check=False)
    if p.returncode != 0:
        rep.notes.append(f"could not build {src}: {tail(p.stderr)}")
        return
    p = run([exe], timeout=120, check=False)
    try:
        got = json.loads(p.stdout)
    except ValueError:
        rep.notes.append(f"crypto ceiling: unreadable output {p.stdout!r}")
        return
    if not got["batched"]:
        rep.notes.append("crypto ceiling: the batched keystream did not take the 16-byte calls")
        return
    rep.context["crypto_ceiling"] = got


# The three figures below were assertions of Tests/IntegrationTests; each
# runs in a supervisor of its own (Testbed.aside), which takes only the one
# tunnel, as the tests' `tunnel up --foreground` did, and keeps the rows'
# supervisor log free of what it provokes. echo1 is one SSH connection to an
# echo server that stops reading while its writes back are stuck, as the
# tests' blocking echo server did.
PAGE_FAULTS_BOUND = 4000
STALLED_BOUND_MIB = 48
IDLE_CONNECTIONS = 500
IDLE_BOUND_MIB = 16
LATE_WINDOW_S = (4.5, 8)


def _echo_through(port, payload):
    """Sends payload through 127.0.0.1:port while reading the echo, half-closes, and checks every byte came back."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        failed = []

        def send():
            try:
                s.sendall(payload)
                s.shutdown(socket.SHUT_WR)
            except OSError as e:
                failed.append(e)
        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        got = bytearray()
        while True:
            chunk = s.recv(MIB)
            if not chunk:
                break
            got += chunk
        sender.join(60)
    if failed or got != payload:
        raise BenchError(f"the echo of {len(payload) // MIB} MiB came back wrong "
                         f"({len(got)} bytes{', ' + str(failed[0]) if failed else ''})")


def page_faults(tb):
    """Minor page faults of tunnel's process while 64 MiB are echoed through one tunnel (128 MiB crossing),
    after 8 MiB to bring the heap to its working size (ForwardingTests' bulk-transfer heap test)."""
    aside = tb.aside("context")
    tb.start_paced_echo()
    log("memory: page faults while 128 MiB cross one tunnel (context)")
    try:
        with aside.forward("tunnel", "echo1", fresh=True) as (port, pid):
            _echo_through(port, os.urandom(8 * MIB))
            before = minor_faults(pid)
            _echo_through(port, os.urandom(64 * MIB))
            faults = minor_faults(pid) - before
    finally:
        aside.stop_supervisor()
    return {"minor_faults": faults, "echoed_mib": 64, "warm_up_mib": 8, "test_bound": PAGE_FAULTS_BOUND}


def rss_backpressure(tb):
    """tunnel's RSS growth while a client writes and never reads (until a send blocks 3 s, at most 512 MiB),
    then with IDLE_CONNECTIONS idle connections more (ForwardingTests' slow-reader test)."""
    aside = tb.aside("context")
    tb.start_paced_echo()
    log(f"memory: RSS with a client that never reads, then {IDLE_CONNECTIONS} idle connections (context)")
    idle_socks = []
    try:
        with aside.forward("tunnel", "echo1", fresh=True) as (port, pid):
            baseline = status_kib(pid, "VmRSS")
            with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
                chunk = os.urandom(MIB)
                sent = 0
                while sent < 512 * MIB:
                    try:
                        sent += s.send(chunk)
                    except OSError:   # a send blocked 3 s (TimeoutError): the pipeline is full
                        break
                stalled = status_kib(pid, "VmRSS")
                for _ in range(IDLE_CONNECTIONS):
                    idle_socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
                time.sleep(0.5)
                with_idle = status_kib(pid, "VmRSS")
            if not alive(pid):
                raise BenchError("the supervisor died")
    finally:
        for c in idle_socks:
            c.close()
        aside.stop_supervisor()
    return {"baseline_mib": round(baseline / 1024, 2), "stuck_mib": round(sent / MIB, 1),
            "stalled_growth_mib": round((stalled - baseline) / 1024, 2), "stalled_bound_mib": STALLED_BOUND_MIB,
            "idle_connections": IDLE_CONNECTIONS, "idle_growth_mib": round((with_idle - stalled) / 1024, 2),
            "idle_bound_mib": IDLE_BOUND_MIB}


def late_session(tb):
    """How long a cold `tunnel up` of a sessions = 2 profile takes when the second SSH connection's
    server says nothing for LATE_BY_S s: it should give up on it after connect_timeout and report
    the tunnel up with a note (SessionsTests' late-second-session test)."""
    aside = tb.aside("late")
    log(f"start: tunnel up with its second SSH connection held back {LATE_BY_S} s, "
        f"connect_timeout = {LATE_CONNECT_TIMEOUT} (context)")
    relay = DelayedRelay(tb.relay_port, tb.ssh_port, [0, LATE_BY_S])
    try:
        t0 = time.monotonic()
        p = aside.tunnel_cmd("up", "late", timeout=30, check=False)
        waited = time.monotonic() - t0
        pid = aside.supervisor_pid()
        if pid:
            tb.supervisor_pids.add(pid)
        if p.returncode != 0:
            raise BenchError(f"`tunnel up late` exited {p.returncode}: {tail(p.stderr or p.stdout)}")
    finally:
        aside.stop_supervisor()
        relay.stop()
    said = [l.strip() for l in p.stderr.splitlines() if "SSH connections up" in l]
    return {"seconds": round(waited, 2), "late_by_s": LATE_BY_S, "connect_timeout_s": LATE_CONNECT_TIMEOUT,
            "test_window_s": list(LATE_WINDOW_S), "note": said[0] if said else None}


# After these rows, these context measurements (report key, function).
CONTEXT_AFTER = {
    "memory": (("page_faults", page_faults), ("rss_backpressure", rss_backpressure)),
    "start": (("late_session", late_session),),
}


# -------------------------------------------------------------- all rows
def measure(tb, rep, selected):
    """Runs the selected rows in table order, filing a record per row in rep.results
    (a row that fails is filed as not measured) and their context in rep.context."""
    if "up" in selected or "down" in selected:
        crypto_ceiling(tb, rep)
    fanout_cache = {}
    for k, row in enumerate(r for r in report.ROW_ORDER if r in selected):
        t0 = time.monotonic()
        try:
            rep.results[row] = _measure_row(tb, rep, row, k, fanout_cache)
        finally:
            if row in rep.results:
                rep.results[row]["seconds"] = round(time.monotonic() - t0, 1)
        for key, context in CONTEXT_AFTER.get(row, ()):
            try:
                rep.context[key] = context(tb)
            except (BenchError, OSError) as e:
                warn(f"{key} (context) could not be measured: {e}")
                rep.notes.append(f"{key} (context) not measured: {e}")


def _measure_row(tb, rep, row, k, fanout_cache):
    try:
        if row in ("up", "down"):
            res = throughput(tb, rep, row, k)
        elif row in ("query", "storm"):
            res = query_or_storm(tb, rep, row, k)
        elif row in ("fanout", "memory"):
            if "data" not in fanout_cache:
                fanout_cache["data"] = fanout(tb, rep, k)
            if fanout_cache["data"] is None:
                return report.record(row, None, error="not measured: the fan-out failed")
            res = (fanout_row if row == "fanout" else memory_row)(fanout_cache["data"])
        elif row == "idle":
            res = idle(tb)
        elif row == "start":
            res = start(tb)
        elif row == "lazy":
            res = lazy(tb)
        return report.record(row, res)
    except BenchError as e:
        if row in ("fanout", "memory"):
            fanout_cache["data"] = None
        warn(f"{row}: could not be measured: {e}")
        return report.record(row, None, error=str(e))
    except (KeyError, TypeError) as e:
        return report.record(row, None, error=f"not measured: {e!r}")
