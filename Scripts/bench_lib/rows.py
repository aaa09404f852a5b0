"""The measurements: one function per row of the table, and the context measured beside them.

Each row function takes the Testbed (and the Report, for the context it
gathers on the way) and returns {variant: (value, detail)} for tunnel, ssh
(same algorithms) and ssh_default; `measure` runs the selected rows in table
order and files a result record per row with report.record. Every tunnel row
runs the default profile; the busy row brings four of them up in one
supervisor and loads all four at once. Rows measured together share one measurement:
fanout and memory, the five scale rows, the three jump rows; cpu_gb and
cpu_tx divide the CPU that the up, down and query samples recorded. Context
(no target): direct runs without forwarding, the tuned profile
(sessions = --sessions) beside the query row, the fan-out burst, the
libcrypto ceiling, and three figures the integration tests once asserted
(page faults during a bulk transfer, RSS with a stalled client and idle
connections, `tunnel up` waiting out connect_timeout).
FULL and SMOKE are the sizes of a full run and of --smoke.
"""
import glob
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

from bench_lib import report
from bench_lib.testbed import (BENCH_LIB, BUSY_N, LATE_BY_S, LATE_CONNECT_TIMEOUT, ROOT, BenchError, DelayedRelay, PeriodicSampler, Sampler,
                               alive, cpu_of, cpu_seconds, fd_count, machine_cpu, free_port, kill_pid, log, minor_faults,
                               pids_with_arg, popen_logged, readline_timeout, run, status_kib, stop_popen, tail,
                               wait_listening, warn)

# query_rounds, iperf_rounds: the query and throughput rows are the median of
# that many interleaved samples per side (tunnel, ssh -L, ssh -L, tunnel, ...):
# this VM's noise moves one sample by more than the 20 % the targets ask for
# (ssh -L alone measured 2.5 to 3.8 Gbit/s in back-to-back 5 s runs).
#
# A full run must stay under 12 minutes (without the build): iperf3 runs 6 s
# and pgbench 8 s per sample, the context runs (direct, tuned profile) 3-4 s.
# lat_*: the latency rows (round trips per sample, samples per side, new
# connections per sample); scale_*: tunnels in the scale row's supervisor and
# its idle window (CPU per minute is scaled from it); conns_n: the idle
# connections held through one forwarder; jump_*: the jump rows' sizes;
# busy_*: the busy row's rounds and iperf3 seconds (those of up and down in a
# full run: 3 rounds x 2 sides x about 8 s, under a minute in all).
FULL = dict(iperf_t=6, iperf_rounds=3, busy_t=6, busy_rounds=3, pg_t=8, pg_scale=5, query_rounds=3, storm_rounds=1, fan_n=5000,
            fan_size=65536, fan_timeout=30, idle_n=20, idle_s=60, start_reps=5, direct=True,
            lat_trips=3000, lat_rounds=3, lat_new=300, scale_n=300, scale_idle_s=20, conns_n=10000,
            jump_rounds=2, jump_iperf_t=5, jump_pg_t=6)
SMOKE = dict(iperf_t=1, iperf_rounds=2, busy_t=1, busy_rounds=2, pg_t=2, pg_scale=5, query_rounds=2, storm_rounds=1, fan_n=200,
             fan_size=65536, fan_timeout=60, idle_n=3, idle_s=3, start_reps=1, direct=False,
             lat_trips=1000, lat_rounds=1, lat_new=100, scale_n=50, scale_idle_s=3, conns_n=300,
             jump_rounds=1, jump_iperf_t=1, jump_pg_t=2)

FANOUT_PACED = 100
# Direct runs (no forwarding) and the tuned profile are context only: shorter, to keep a full run under 12 minutes.
CONTEXT_T = 3
MIB = 1 << 20


def order(k):
    """tunnel and ssh -L alternate from row to row (and from repetition to repetition)."""
    return ["tunnel", "ssh", "ssh_default"] if k % 2 == 0 else ["ssh", "tunnel", "ssh_default"]


class CPUWatch:
    """CPU seconds of a forwarder (tunnel's supervisor or the ssh process) and of the
    sshd processes serving the testbed, between start() and stop(). sshd's side is
    every process below the sshd listener: only the forward measured is up then."""

    def __init__(self, tb, pid):
        self.tb, self.pid = tb, pid

    def start(self):
        self.f0 = cpu_of([self.pid]).get(self.pid, 0.0)
        self.s0 = cpu_of(self.tb.sshd_pids())
        self.m0 = machine_cpu()
        return self

    def stop(self):
        f1 = cpu_of([self.pid]).get(self.pid, self.f0)
        s1 = cpu_of(self.tb.sshd_pids())
        # The whole machine too: where it is busy throughout, a row's rate is
        # capped by the CPU every process spends per unit of work.
        m1 = machine_cpu()
        busy, total = m1[0] - self.m0[0], m1[1] - self.m0[1]
        # processes that started meanwhile (an extra SSH connection) count from 0
        return {"forwarder_cpu_s": round(f1 - self.f0, 3),
                "sshd_cpu_s": round(sum(v - self.s0.get(p, 0.0) for p, v in s1.items()), 3),
                "machine_cpu_s": round(busy, 3), "machine_busy": round(busy / total, 3) if total > 0 else None}


def interleaved(tb, k, rounds, profile, unit, what, measure_one, variants=None):
    """`rounds` samples per variant in alternating order (the second
    reference gets one); per variant the median value, with the detail of
    the sample nearest it and, over several rounds, every sample. Each
    sample's detail also holds the CPU seconds of the forwarder and of sshd
    (CPUWatch), and the totals over a variant's samples go in its detail
    (the CPU-cost rows divide them by the work done)."""
    samples = {}
    for r in range(rounds):
        for v in order(k + r):
            if variants is not None and v not in variants:
                continue
            if v == "ssh_default" and r > 0:
                continue
            log(f"{what} through {v}" + (f" (round {r + 1} of {rounds})" if rounds > 1 else ""))
            with tb.forward(v, profile) as (port, pid):
                watch = CPUWatch(tb, pid).start()
                value, detail = measure_one(port)
                samples.setdefault(v, []).append((value, dict(detail, **watch.stop())))
    res = {}
    for v, got in samples.items():
        value = statistics.median(s[0] for s in got)
        detail = min(got, key=lambda s: abs(s[0] - value))[1]
        totals = {key: round(sum(s[1].get(key) or 0 for s in got), 3)
                  for key in ("forwarder_cpu_s", "sshd_cpu_s", "machine_cpu_s", "bytes", "transactions")}
        detail = dict(detail, totals={key: val for key, val in totals.items() if val})
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
                 "bytes": end["sum_received"].get("bytes"),
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


# ------------------------------------------------------------------- busy
class ThreadWatch(PeriodicSampler):
    """The summed Threads of /proc/PID/status of some processes, every 100 ms: min, max and the samples."""

    def __init__(self, pids, interval=0.1):
        super().__init__(interval)
        self.pids = list(pids)
        self.samples = []

    def sample(self):
        self.samples.append(sum(status_kib(p, "Threads") for p in self.pids))

    def stop(self):
        super().stop()
        return {"min": min(self.samples, default=None), "max": max(self.samples, default=None),
                "samples": len(self.samples)}


class BusyForwards:
    """`with BusyForwards(tb, variant) as (local ports, forwarder pids)`: the BUSY_N busy
    profiles brought up together in the rows' supervisor (one `tunnel up`), or one
    `ssh -N -L` per busy target, all started before any is waited for."""

    def __init__(self, tb, variant):
        self.tb, self.variant, self.procs = tb, variant, []
        self.names = [f"busy{i}" for i in range(1, BUSY_N + 1)]

    def __enter__(self):
        tb = self.tb
        if self.variant == "tunnel":
            pid = tb.tunnel_up(*self.names)
            return [tb.tports[n] for n in self.names], [pid]
        spawned = [tb.spawn_ssh(self.variant, tb.targets[n]) for n in self.names]
        self.procs = [p for p, _, _ in spawned]
        try:
            for p, lport, errpath in spawned:
                try:
                    wait_listening(lport, 20, p, f"ssh -L ({self.variant})")
                except BenchError as e:
                    with open(errpath) as f:
                        raise BenchError(f"{e}: {tail(f.read())}")
        except BenchError:
            self.__exit__()
            raise
        return [lport for _, lport, _ in spawned], [p.pid for p in self.procs]

    def __exit__(self, *exc):
        if self.variant == "tunnel":
            self.tb.tunnel_down(*self.names)
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            self.tb.forget(p)
        return False


def busy_once(tb, ports, pids, t):
    """BUSY_N `iperf3 -c -t t` (up, as row up), one per local port, started together; returns
    (the sum of their received Mbit/s, detail with each one's Mbit/s, the forwarders' threads
    during the run, and the CPU seconds of the forwarders and of sshd)."""
    f0, s0 = cpu_of(pids), cpu_of(tb.sshd_pids())
    threads_before = sum(status_kib(p, "Threads") for p in pids)
    watch = ThreadWatch(pids)
    watch.start()
    clients = []
    try:
        for port in ports:
            clients.append(subprocess.Popen(
                ["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(t), "-J", "--connect-timeout", "10000"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=tb.env))
        tb.procs.extend(clients)
        outs = []
        deadline = time.monotonic() + t + 40
        for c in clients:
            try:
                outs.append(c.communicate(timeout=max(1, deadline - time.monotonic())))
            except subprocess.TimeoutExpired:
                outs.append(None)
    finally:
        threads = watch.stop()
        for c in clients:
            tb.forget(c)
    f1, s1 = cpu_of(pids), cpu_of(tb.sshd_pids())
    per, sent, total_bytes, problems = [], [], 0, []
    for i, (c, out) in enumerate(zip(clients, outs)):
        try:
            if out is None:
                raise BenchError(f"did not finish within {t + 40} s")
            data = json.loads(out[0])
            if data.get("error") or c.returncode != 0:
                raise BenchError(data.get("error") or tail(out[1]))
            end = data["end"]
            per.append(end["sum_received"]["bits_per_second"] / 1e6)
            sent.append(end["sum_sent"]["bits_per_second"] / 1e6)
            total_bytes += end["sum_received"].get("bytes") or 0
        except (BenchError, ValueError, KeyError, TypeError) as e:
            problems.append(f"busy{i + 1}: {e}")
            tb.restart_busy_iperf(i)
    if problems:
        raise BenchError("iperf3: " + "; ".join(problems))
    total = sum(per)
    return total, {"received_mbit_s": round(total, 1), "per_tunnel_mbit_s": [round(x, 1) for x in per],
                   "sent_mbit_s": round(sum(sent), 1), "bytes": total_bytes,
                   "forwarder_processes": len(pids), "threads_before": threads_before,
                   "threads_max": threads["max"], "threads_min": threads["min"], "thread_samples": threads["samples"],
                   "forwarder_cpu_s": round(sum(v - f0.get(p, v) for p, v in f1.items()), 3),
                   "sshd_cpu_s": round(sum(v - s0.get(p, 0.0) for p, v in s1.items()), 3)}


def busy(tb, k):
    """Row busy: BUSY_N tunnels in one supervisor, each to an iperf3 server of its own, with
    BUSY_N `iperf3 -c` (up) at once; the sum of their received Mbit/s, against BUSY_N `ssh -N -L`
    (same algorithms) run the same way. busy_rounds interleaved rounds of busy_t s, the median;
    the detail holds each tunnel's Mbit/s and the forwarders' threads (the supervisor's, or the
    ssh processes' summed) during the run. No default-algorithms reference (time)."""
    rounds, t = tb.p["busy_rounds"], tb.p["busy_t"]
    tb.start_busy_iperf()
    samples = {}
    try:
        for r in range(rounds):
            for v in order(k + r):
                if v == "ssh_default":
                    continue
                log(f"busy: {BUSY_N} x iperf3 -t {t} at once through {BUSY_N} "
                    f"{'tunnels (one supervisor)' if v == 'tunnel' else 'ssh -N -L'} (round {r + 1} of {rounds})")
                with BusyForwards(tb, v) as (ports, pids):
                    value, detail = busy_once(tb, ports, pids, t)
                log(f"busy: {v}: {value:,.0f} Mbit/s (" + ", ".join(f"{x:,.0f}" for x in detail["per_tunnel_mbit_s"])
                    + f"), {detail['threads_max']} threads")
                samples.setdefault(v, []).append((value, detail))
    finally:
        tb.stop_busy_iperf()
    res = {}
    for v, got in samples.items():
        value = statistics.median(s[0] for s in got)
        detail = min(got, key=lambda s: abs(s[0] - value))[1]
        totals = {key: round(sum(s[1].get(key) or 0 for s in got), 3) for key in ("forwarder_cpu_s", "sshd_cpu_s", "bytes")}
        detail = dict(detail, totals=totals, threads_max_all=max(s[1]["threads_max"] or 0 for s in got),
                      tunnels=BUSY_N, seconds_each=t)
        if len(got) > 1:
            detail = dict(detail, median_of=len(got), samples_mbit_s=[round(s[0], 1) for s in got])
        res[v] = (value, detail)
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
    if "transactions" in detail:
        detail["transactions"] = int(detail["transactions"])
    return detail["tps"], detail


def query_or_storm(tb, rep, row, k):
    """Rows query (8 clients, connected once) and storm (-C: a connection per transaction);
    in a full run also direct and, for query, through the tuned profile (sessions = --sessions), as context."""
    storm = row == "storm"
    res = interleaved(tb, k, tb.p["storm_rounds" if storm else "query_rounds"], "db", "tps",
                      f"{row}: pgbench -S{' -C -c 4' if storm else ' -c 8'} -j 2 -T {tb.p['pg_t']}",
                      lambda port: pgbench(tb, port, storm))
    if tb.p["direct"] and not storm:
        log(f"{row}: pgbench through tunnel with sessions = {tb.args.sessions}, {tb.p['pg_t']} s (context, tuned)")
        with tb.forward("tunnel", "db_tuned") as (port, _):
            rep.context[f"{row}_tuned"] = dict(pgbench(tb, port, storm)[1], sessions=tb.args.sessions)
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


# ---------------------------------------------------------------- latency
LAT_BYTES = 64
LAT_WARMUP = 100


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def _echo_once(s, msg, what):
    s.sendall(msg)
    got = 0
    while got < LAT_BYTES:
        chunk = s.recv(LAT_BYTES - got)
        if not chunk:
            raise BenchError(f"the echo {what} closed the connection")
        got += len(chunk)


def round_trips(direct_port, port, n):
    """n round trips of LAT_BYTES bytes over one connection through port, each right after
    one over a direct connection to the echo server (so both see the same moment of a busy
    machine), after LAT_WARMUP pairs not counted; returns (direct µs, through µs)."""
    msg = os.urandom(LAT_BYTES)
    d_out, t_out = [], []
    with socket.create_connection(("127.0.0.1", direct_port), timeout=10) as d, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as t:
        for s in (d, t):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n + LAT_WARMUP):
            t0 = time.perf_counter_ns()
            _echo_once(d, msg, "direct")
            t1 = time.perf_counter_ns()
            _echo_once(t, msg, f"through port {port}")
            t2 = time.perf_counter_ns()
            if i >= LAT_WARMUP:
                d_out.append((t1 - t0) / 1000)
                t_out.append((t2 - t1) / 1000)
    return d_out, t_out


def new_connections(direct_port, port, n):
    """n times, a direct one then one through port: connect, one LAT_BYTES round trip, close;
    returns (direct µs, through µs)."""
    msg = os.urandom(LAT_BYTES)
    out = ([], [])
    for i in range(n):
        for j, p in enumerate((direct_port, port)):
            t0 = time.perf_counter_ns()
            with socket.create_connection(("127.0.0.1", p), timeout=10) as s:
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _echo_once(s, msg, f"through port {p} (new connection {i})")
                out[j].append((time.perf_counter_ns() - t0) / 1000)
    return out


def latency(tb, rep, row, k):
    """Rows latency (one connection, lat_trips round trips of 64 bytes) and connect (lat_new
    times: connect, one 64-byte round trip, close), through the echo profile, each trip
    paired with one direct to the echo server (no forwarding) just before it. Variants in
    alternating order over lat_rounds rounds; a variant's value is what it adds over direct
    at p50 (microseconds; p50 through minus p50 direct of the same sample), the median over
    rounds, so the ratio is (tunnel - direct) / (ssh - direct). p99 goes in the detail."""
    new = row == "connect"
    n = tb.p["lat_new"] if new else tb.p["lat_trips"]
    fn = new_connections if new else round_trips
    what = (f"{n} x (connect + one {LAT_BYTES}-byte round trip + close)" if new
            else f"{n} {LAT_BYTES}-byte round trips on one connection")
    per = {}
    direct = []
    for r in range(tb.p["lat_rounds"]):
        for v in order(k + r):
            if v == "ssh_default" and r > 0:
                continue
            log(f"{row}: {what}, through {v}, each after one direct (round {r + 1} of {tb.p['lat_rounds']})")
            with tb.forward(v, "echo") as (port, _):
                if new:
                    new_connections(tb.echo_port, port, 5)   # the first channel (and any extra connection) not counted
                d, got = fn(tb.echo_port, port, n)
            d50, d99 = pct(d, 0.5), pct(d, 0.99)
            direct.append((d50, d99))
            per.setdefault(v, []).append((pct(got, 0.5) - d50, pct(got, 0.99) - d99, pct(got, 0.5), pct(got, 0.99)))
    res = {}
    for v, got in per.items():
        add50 = statistics.median(g[0] for g in got)
        res[v] = (add50, {"added_p50_us": round(add50, 1), "added_p99_us": round(statistics.median(g[1] for g in got), 1),
                          "p50_us": round(statistics.median(g[2] for g in got), 1),
                          "p99_us": round(statistics.median(g[3] for g in got), 1),
                          "samples_added_p50_us": [round(g[0], 1) for g in got], "n": n})
    rep.context[f"{row}_direct"] = {"p50_us": round(statistics.median(d[0] for d in direct), 1),
                                    "p99_us": round(statistics.median(d[1] for d in direct), 1)}
    if res.get("ssh") and res["ssh"][0] <= 0:
        raise BenchError(f"ssh -L added {res['ssh'][0]:.1f} µs over direct: no ratio to take")
    return res


# ------------------------------------------------------------------ scale
def timed(fn, reps):
    """The median seconds of `reps` calls of fn."""
    times = []
    for _ in range(reps):
        t0 = time.monotonic()
        fn()
        times.append(time.monotonic() - t0)
    return statistics.median(times)


def proc_threads(pid):
    return status_kib(pid, "Threads")


def scale(tb, rep):
    """The scale rows' data: scale_n default profiles (a config and supervisor of their own)
    brought up with one cold `tunnel up`; then the supervisor's RSS, threads and fds, its CPU
    over scale_idle_s without traffic (scaled to a minute), and `tunnel ls --json`'s time
    (median of 3)."""
    n = tb.p["scale_n"]
    aside, names = tb.write_scale_profiles(n)
    log(f"scale: tunnel up of {n} tunnels (cold, a supervisor of its own)")
    aside.stop_supervisor()
    try:
        t0 = time.monotonic()
        aside.tunnel_cmd("up", *names, "--timeout", "120", timeout=240)
        up_s = time.monotonic() - t0
        pid = aside.supervisor_pid()
        if pid is None:
            raise BenchError("no supervisor after `tunnel up` of the scale tunnels")
        tb.supervisor_pids.add(pid)
        listed = aside.tunnel_ls()
        states = {}
        if isinstance(listed, list):
            for t in listed:
                states[t.get("state")] = states.get(t.get("state"), 0) + 1
        if states.get("up", 0) < n:
            raise BenchError(f"after `tunnel up` of {n} tunnels: {states or listed}")
        time.sleep(2)
        rss = status_kib(pid, "VmRSS")
        threads, fds = proc_threads(pid), fd_count(pid)
        secs = tb.p["scale_idle_s"]
        log(f"scale: {n} tunnels idle for {secs} s (CPU scaled to a minute), then tunnel ls --json x3")
        c0 = cpu_seconds(pid)
        time.sleep(secs)
        idle_per_min = (cpu_seconds(pid) - c0) * 60 / secs
        ls_s = timed(lambda: aside.tunnel_cmd("ls", "--json", timeout=30), 3)
        rss_after = status_kib(pid, "VmRSS")
        data = {"tunnels": n, "up_s": round(up_s, 2), "rss_mib": round(max(rss, rss_after) / 1024, 1),
                "threads": threads, "fds": fds, "idle_cpu_s_per_min": round(idle_per_min, 3), "idle_window_s": secs,
                "ls_json_s": round(ls_s, 3), "cores": os.cpu_count(), "sshd_processes": len(tb.sshd_pids())}
        log(f"scale: up {up_s:.1f} s, RSS {data['rss_mib']} MiB, {threads} threads, {fds} fds, "
            f"idle {idle_per_min:.3f} CPU s/min, ls --json {ls_s:.3f} s")
        return data
    finally:
        t0 = time.monotonic()
        aside.tunnel_down()
        aside.stop_supervisor()
        log(f"scale: down and supervisor stopped in {time.monotonic() - t0:.1f} s")


SCALE_ROWS = {"scale_up": "up_s", "scale_threads": "threads", "scale_rss": "rss_mib",
              "scale_idle": "idle_cpu_s_per_min", "scale_ls": "ls_json_s"}


def scale_row(row, data):
    return {"tunnel": (data[SCALE_ROWS[row]], data)}


# ------------------------------------------------- idle connections (conns)
def hold_connections(tb, variant):
    """conns_n connections (64 bytes echoed each, at most FANOUT_PACED awaiting their first
    byte) through a fresh forwarder, all held open: the forwarder's RSS, threads and fds
    before and with all of them open."""
    n = tb.p["conns_n"]
    with tb.forward(variant, "echo", fresh=True) as (port, pid):
        time.sleep(0.5)
        base = status_kib(pid, "VmRSS")
        base_fds = fd_count(pid)
        client = subprocess.Popen([sys.executable, os.path.join(BENCH_LIB, "fanout_client.py"), "--port", str(port),
                                   "--connections", str(n), "--size", "64", "--timeout", str(max(60, n // 50)),
                                   "--paced", str(FANOUT_PACED), "--hold"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        tb.procs.append(client)
        try:
            line = readline_timeout(client.stdout, max(90, n // 40))
            if not line or not line.startswith("HELD"):
                raise BenchError(f"the client did not hold its connections: {line!r} {tail(client.stderr.read() if client.poll() is not None else '')}")
            open_now = int(line.split()[1])
            time.sleep(1)
            if not alive(pid):
                raise BenchError(f"the forwarding process (pid {pid}) died with {open_now} connections open")
            held = status_kib(pid, "VmRSS")
            threads, fds = proc_threads(pid), fd_count(pid)
            out, err = client.communicate("\n", timeout=120)
        finally:
            tb.forget(client)
        try:
            data = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"the connection client failed (exit {client.returncode}): {tail(err or out)}")
        if open_now == 0:
            raise BenchError(f"no connection was held open ({data.get('examples')})")
        return {"connections": n, "open": open_now, "failures": data["failures"], "examples": data["examples"][:2],
                "opened_in_s": data.get("all_open_after_s"), "rss_before_mib": round(base / 1024, 2),
                "rss_held_mib": round(held / 1024, 2), "kib_per_connection": round((held - base) / open_now, 2),
                "threads": threads, "fds_before": base_fds, "fds_held": fds}


def conns(tb, k):
    """Row conns: KiB of the forwarder's RSS per idle connection held open through it."""
    if not tb.fd_ok:
        raise BenchError(tb.fd_problem)
    res = {}
    for v in order(k)[:2]:
        log(f"conns: {tb.p['conns_n']} idle connections held through {v} (fresh {'supervisor' if v == 'tunnel' else 'ssh process'})")
        d = hold_connections(tb, v)
        log(f"conns: {v}: {d['open']} open, {d['kib_per_connection']:.1f} KiB each, RSS {d['rss_held_mib']:.1f} MiB, "
            f"{d['failures']} failed")
        res[v] = (d["kib_per_connection"], d)
    return res


# --------------------------------------------------------------- CPU cost
def cpu_cost(tb, rep, row, k, sources):
    """Rows cpu_gb (forwarder CPU s per GB through iperf3, up and down together) and cpu_tx
    (per 1,000 pgbench -S -c 8 transactions), from the samples of rows up, down and query
    (their totals; when those rows did not run, one sample each is taken here). sshd's side
    goes in the detail."""
    kind = "bytes" if row == "cpu_gb" else "transactions"
    per = 1e9 if row == "cpu_gb" else 1000
    need = ("up", "down") if row == "cpu_gb" else ("query",)
    res = {}
    for src in need:
        data = sources.get(src)
        if data is None:
            log(f"{row}: row {src} did not run here, one sample per side")
            if src == "query":
                data = interleaved(tb, k, 1, "db", "tps", f"{row}: pgbench -S -c 8 -j 2 -T {tb.p['pg_t']}",
                                   lambda port: pgbench(tb, port, False), variants=("tunnel", "ssh"))
            else:
                data = interleaved(tb, k, 1, "iperf", "mbit_s", f"{row}: iperf3{' -R' if src == 'down' else ''} -t {tb.p['iperf_t']}",
                                   lambda port, rev=(src == "down"): iperf(tb, port, rev), variants=("tunnel", "ssh"))
            sources[src] = data
        for v, (_, detail) in data.items():
            t = detail.get("totals", {})
            acc = res.setdefault(v, {"forwarder_cpu_s": 0.0, "sshd_cpu_s": 0.0, "work": 0})
            acc["forwarder_cpu_s"] += t.get("forwarder_cpu_s", 0)
            acc["sshd_cpu_s"] += t.get("sshd_cpu_s", 0)
            acc["work"] += t.get(kind, 0)
    out = {}
    for v, acc in res.items():
        if not acc["work"]:
            continue
        f = acc["forwarder_cpu_s"] * per / acc["work"]
        out[v] = (f, {"forwarder": round(f, 3), "sshd": round(acc["sshd_cpu_s"] * per / acc["work"], 3),
                      "forwarder_cpu_s": round(acc["forwarder_cpu_s"], 2), "sshd_cpu_s": round(acc["sshd_cpu_s"], 2),
                      kind: acc["work"], "from_rows": list(need)})
    if "tunnel" not in out or "ssh" not in out:
        raise BenchError(f"no {kind} counted")
    return out


# ------------------------------------------------------------------- jump
class JumpForward:
    """`with JumpForward(tb, variant) as (iperf_port, pg_port, pid)`: the jump profile through
    tunnel, or `ssh -N -J bastion -L ... -L ...` (own process group: its `ssh -W` goes too)."""

    def __init__(self, tb, variant):
        self.tb, self.variant, self.proc = tb, variant, None

    def __enter__(self):
        tb = self.tb
        if self.variant == "tunnel":
            pid = tb.tunnel_up("jump")
            return tb.tports["jump"], tb.tports["jump_db"], pid
        ports = free_port(), free_port()
        errpath = os.path.join(tb.work, f"ssh-jump-{ports[0]}.err")
        argv = ["ssh", "-N", "-F", tb.jump_ssh_config, "-J", "bench-bastion",
                "-L", f"127.0.0.1:{ports[0]}:127.0.0.1:{tb.iperf_port}",
                "-L", f"127.0.0.1:{ports[1]}:127.0.0.1:{tb.pg_port}", "bench-target"]
        self.proc = popen_logged(argv, errpath, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=tb.env,
                                 start_new_session=True)
        tb.procs.append(self.proc)
        try:
            for p in ports:
                wait_listening(p, 30, self.proc, "ssh -J -L")
        except BenchError as e:
            self.__exit__()
            with open(errpath) as f:
                raise BenchError(f"{e}: {tail(f.read())}")
        return ports[0], ports[1], self.proc.pid

    def __exit__(self, *exc):
        if self.variant == "tunnel":
            self.tb.tunnel_down("jump")
            return False
        self.tb.forget(self.proc)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        return False


def jump(tb, rep, k):
    """The jump rows' data: per round, in alternating order, the jump profile through tunnel and
    `ssh -J -L` (one SSH chain each, carrying both forwards): iperf3 up, iperf3 -R, pgbench
    -S -c 8 -j 2. Medians over jump_rounds. Returns {row: {variant: (value, detail)}}."""
    tb.start_bastion()
    samples = {}
    t_i, t_p = tb.p["jump_iperf_t"], tb.p["jump_pg_t"]
    for r in range(tb.p["jump_rounds"]):
        for v in order(k + r):
            if v == "ssh_default":
                continue
            log(f"jump: through {'tunnel (jump = bastion)' if v == 'tunnel' else 'ssh -J bastion -L'}: iperf3 -t {t_i}, -R, "
                f"pgbench -S -c 8 -j 2 -T {t_p} (round {r + 1} of {tb.p['jump_rounds']})")
            with JumpForward(tb, v) as (ip, pg, _):
                samples.setdefault(("jump_up", v), []).append(iperf(tb, ip, False, t_i))
                samples.setdefault(("jump_down", v), []).append(iperf(tb, ip, True, t_i))
                samples.setdefault(("jump_query", v), []).append(pgbench(tb, pg, False, t_p))
    out = {}
    for (row, v), got in samples.items():
        value = statistics.median(g[0] for g in got)
        detail = dict(min(got, key=lambda g: abs(g[0] - value))[1], samples=[round(g[0], 1) for g in got])
        out.setdefault(row, {})[v] = (value, detail)
    return out


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

    def failed(why):
        rep.notes.append(why)
        rep.ceiling_failure = why

    # The whole module, as the executable links it: its files call each other.
    sources = sorted(glob.glob(os.path.join(keystream, "*.c")))
    p = run([cc, "-O2", "-o", exe, src] + sources + ["-I", os.path.join(keystream, "include"),
             "-lssh2", "-lcrypto", "-Wno-deprecated-declarations"], timeout=120, check=False)
    if p.returncode != 0:
        return failed(f"could not build {src}: {tail(p.stderr)}")
    p = run([exe, tb.mac], timeout=120, check=False)
    try:
        got = json.loads(p.stdout)
    except ValueError:
        return failed(f"crypto ceiling: unreadable output {p.stdout!r}")
    if not got["batched"]:
        return failed("crypto ceiling: the batched keystream did not take the 16-byte calls")
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
    (a row that fails is filed as not measured) and their context in rep.context.
    Rows measured together (fanout and memory, the scale rows, the jump rows) share
    one measurement: its seconds go to the first of them."""
    if "up" in selected or "down" in selected:
        crypto_ceiling(tb, rep)
    cache = {"sources": {}}
    for k, row in enumerate(r for r in report.ROW_ORDER if r in selected):
        t0 = time.monotonic()
        try:
            rep.results[row] = _measure_row(tb, rep, row, k, cache)
        finally:
            if row in rep.results:
                rep.results[row]["seconds"] = round(time.monotonic() - t0, 1)
        for key, context in CONTEXT_AFTER.get(row, ()):
            try:
                rep.context[key] = context(tb)
            except (BenchError, OSError) as e:
                warn(f"{key} (context) could not be measured: {e}")
                rep.notes.append(f"{key} (context) not measured: {e}")


def _shared(cache, key, fn, what):
    """The measurement several rows read, taken once (None once it failed)."""
    if key not in cache:
        try:
            cache[key] = fn()
        except BenchError as e:
            cache[key] = None
            cache[key + "_error"] = str(e)
            warn(f"{what}: could not be measured: {e}")
    if cache[key] is None:
        raise BenchError(f"not measured: {cache.get(key + '_error', what + ' failed')}")
    return cache[key]


def _measure_row(tb, rep, row, k, cache):
    try:
        if row in ("up", "down"):
            res = throughput(tb, rep, row, k)
            cache["sources"][row] = res
        elif row == "busy":
            res = busy(tb, k)
        elif row in ("query", "storm"):
            res = query_or_storm(tb, rep, row, k)
            if row == "query":
                cache["sources"][row] = res
        elif row in ("fanout", "memory"):
            data = _shared(cache, "fanout", lambda: fanout(tb, rep, k), "the fan-out")
            res = (fanout_row if row == "fanout" else memory_row)(data)
        elif row in ("latency", "connect"):
            res = latency(tb, rep, row, k)
        elif row == "idle":
            res = idle(tb)
        elif row == "start":
            res = start(tb)
        elif row == "lazy":
            res = lazy(tb)
        elif row in SCALE_ROWS:
            res = scale_row(row, _shared(cache, "scale", lambda: scale(tb, rep), "the scale run"))
        elif row == "conns":
            res = conns(tb, k)
        elif row in ("cpu_gb", "cpu_tx"):
            res = cpu_cost(tb, rep, row, k, cache["sources"])
        elif row.startswith("jump_"):
            res = _shared(cache, "jump", lambda: jump(tb, rep, k), "the jump rows")[row]
        return report.record(row, res)
    except BenchError as e:
        warn(f"{row}: could not be measured: {e}")
        return report.record(row, None, error=str(e))
    except (KeyError, TypeError) as e:
        return report.record(row, None, error=f"not measured: {e!r}")
