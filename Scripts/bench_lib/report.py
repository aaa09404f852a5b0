"""What the bench reports: the rows and their targets, the result records, the table and the JSON.

ROWS holds each row's title, unit and target (a ratio tunnel / ssh -L, or an
absolute bound); `record` turns a row's per-variant figures into its result
record (ratio, met or not). `Report` gathers the records, the context and the
notes of a run, prints the header, the table and the context lines below it,
writes bench-results/latest.json, and says what fails a --smoke run.
"""
import datetime
import json
import os
import re
import subprocess
import sys
import time

from bench_lib import chart

from bench_lib.testbed import ROOT

RESULTS = os.path.join(ROOT, "bench-results", "latest.json")
CHART = os.path.join(ROOT, "bench-results", "latest.png")
SCALE = ["scale_up", "scale_threads", "scale_rss", "scale_idle", "scale_ls"]
ROW_ORDER = ["up", "down", "busy", "query", "storm", "fanout", "memory", "latency", "connect", "idle", "start", "lazy",
             *SCALE, "conns", "cpu_gb", "cpu_tx", "jump_up", "jump_down", "jump_query"]
ALIASES = {"throughput": ["up", "down"], "busy": ["busy"], "pgbench": ["query", "storm"], "all": ROW_ORDER,
           "fan-out": ["fanout"], "mem": ["memory"], "qps": ["query"], "tps": ["query"],
           "rtt": ["latency", "connect"], "scale": SCALE, "cpu": ["cpu_gb", "cpu_tx"],
           "jump": ["jump_up", "jump_down", "jump_query"]}
VARIANTS = ["tunnel", "ssh", "ssh_default"]
CORES = os.cpu_count() or 1
THREADS_BOUND = 2 * CORES + 6

# name: title, unit, target description, bound, kind. Kinds: "ge" / "le" (the ratio
# tunnel / ssh -L against the bound), "abs" (tunnel's own figure at most the bound),
# "info" (figures and their ratio, no target).
ROWS = {
    "up":     ("throughput up", "Mbit/s", "≥ 0.9", 0.9, "ge"),
    "down":   ("throughput down", "Mbit/s", "≥ 0.9", 0.9, "ge"),
    "busy":   ("4 busy tunnels: total throughput up", "Mbit/s", "— (figure)", None, "info"),
    "query":  ("query rate", "tps", "≥ 1.2", 1.2, "ge"),
    "storm":  ("connection storm", "tps", "≥ 3.0", 3.0, "ge"),
    "fanout": ("fan-out", "s", "≤ 0.8, 0 failures", 0.8, "le"),
    "memory": ("peak RSS during fan-out", "MiB", "≤ 0.8", 0.8, "le"),
    "latency": ("latency, one connection, added p50", "µs", "≤ 0.9", 0.9, "le"),
    "connect": ("latency, new connection, added p50", "µs", "≤ 0.9", 0.9, "le"),
    "idle":   ("idle", "CPU s", "≤ 0.2 s absolute", 0.2, "abs"),
    "start":  ("start", "ms", "≤ 0.5", 0.5, "le"),
    "lazy":   ("lazy first client", "ms", "≤ 1.0", 1.0, "le"),
    "scale_up": ("scale: tunnel up of all", "s", "≤ 10 s", 10.0, "abs"),
    "scale_threads": ("scale: supervisor threads", "", f"≤ {THREADS_BOUND} (2 × cores + 6)", THREADS_BOUND, "abs"),
    "scale_rss": ("scale: supervisor RSS", "MiB", "≤ 80 MiB", 80.0, "abs"),
    "scale_idle": ("scale: idle CPU", "CPU s/min", "≤ 0.5 s/min", 0.5, "abs"),
    "scale_ls": ("scale: tunnel ls --json", "s", "≤ 0.2 s", 0.2, "abs"),
    "conns":  ("idle connections: RSS each", "KiB", "— (figure)", None, "info"),
    "cpu_gb": ("CPU per GB moved (up + down)", "CPU s", "— (figure)", None, "info"),
    "cpu_tx": ("CPU per 1,000 transactions", "CPU s", "— (figure)", None, "info"),
    "jump_up": ("one jump: throughput up", "Mbit/s", "— (figure)", None, "info"),
    "jump_down": ("one jump: throughput down", "Mbit/s", "— (figure)", None, "info"),
    "jump_query": ("one jump: query rate", "tps", "— (figure)", None, "info"),
}


def fmt_value(row, v):
    """A figure as the table shows it."""
    if v is None:
        return "—"
    if row in ("up", "down", "busy", "jump_up", "jump_down"):
        return f"{v:,.0f} Mbit/s"
    if row in ("query", "storm", "jump_query"):
        return f"{v:,.0f} tps"
    if row == "fanout":
        return f"{v:.2f} s"
    if row in ("memory", "scale_rss"):
        return f"{v:.1f} MiB"
    if row == "idle":
        return f"{v:.3f} s"
    if row in ("start", "lazy"):
        return f"{v:.0f} ms"
    if row in ("latency", "connect"):
        return f"+{v:.0f} µs"
    if row == "scale_up":
        return f"{v:.1f} s"
    if row == "scale_threads":
        return f"{v:.0f}"
    if row == "scale_idle":
        return f"{v:.3f} s/min"
    if row == "scale_ls":
        return f"{v:.3f} s"
    if row == "conns":
        return f"{v:.1f} KiB"
    if row == "cpu_gb":
        return f"{v:.2f} s/GB"
    if row == "cpu_tx":
        return f"{v:.3f} s/1k"
    return str(v)


def record(row, per_variant, error=None):
    """A row's result record from {variant: (value, detail)} (None with `error` when it was not
    measured): the values, the ratio tunnel / ssh -L, and whether the target was met."""
    title, unit, target_text, bound, kind = ROWS[row]
    r = {"title": title, "unit": unit, "target": target_text, "bound": bound, "kind": kind, "error": error}
    vals = {}
    for v in VARIANTS:
        if per_variant and v in per_variant:
            val, detail = per_variant[v]
            vals[v] = val
            r[v] = {"value": round(val, 4), **({"detail": detail} if detail else {})}
        else:
            vals[v] = None
            r[v] = None
    t, s = vals["tunnel"], vals["ssh"]
    ratio = t / s if t is not None and s else None
    r["ratio"] = round(ratio, 4) if ratio is not None else None
    met = False
    if kind == "info":
        met = None
    elif error is None and t is not None:
        if kind == "abs":
            met = t <= bound
        elif ratio is not None:
            met = ratio >= bound if kind == "ge" else ratio <= bound
        if row == "fanout":
            failures = [per_variant[v][1].get("failures", 0) for v in ("tunnel", "ssh")]
            met = met and all(f == 0 for f in failures)
    r["met"] = met
    return r


def machine_share(t, sh):
    """Where the whole machine was busy in both sides' query samples, the rate is
    capped by the CPU all processes spend per transaction (pgbench, PostgreSQL,
    sshd, the forwarder): the line states both, and the ratio they allow."""
    def per_tx(d):
        tot = d.get("totals", {})
        if not tot.get("transactions") or not tot.get("machine_cpu_s"):
            return None
        n = tot["transactions"]
        return tot["machine_cpu_s"] / n * 1e6, (tot.get("forwarder_cpu_s", 0) + tot.get("sshd_cpu_s", 0)) / n * 1e6
    a, b = per_tx(t), per_tx(sh)
    if not a or not b or t.get("machine_busy") is None or sh.get("machine_busy") is None:
        return None
    return (f"busy {t['machine_busy'] * 100:.0f} % during tunnel's sample, {sh['machine_busy'] * 100:.0f} % during ssh -L's; "
            f"CPU per transaction, every process: tunnel {a[0]:.0f} µs (forwarder + sshd {a[1]:.0f}), "
            f"ssh -L {b[0]:.0f} µs (forwarder + sshd {b[1]:.0f}); a machine busy throughout caps the ratio near {b[0] / a[0]:.2f}")


class Report:
    """The results of one run: a record per row, the context, notes and what the supervisor log said."""

    def __init__(self, args, params):
        self.args = args
        self.p = params
        self.results = {}          # row -> record
        self.context = {}
        self.notes = []
        self.ceiling_failure = None  # why the crypto ceiling program could not be built or run
        self.tunnel_log_issues = []
        self.tunnel_algorithms = []
        self.pinned = None           # (cipher, MAC) ssh -L (same algorithms) runs with
        self.t_start = time.monotonic()

    def take_supervisor_log(self, bad, algorithms, pinned):
        """The warning/error lines and negotiated algorithms of Testbed.scan_supervisor_log,
        and the (cipher, MAC) ssh -L was pinned to (Testbed.learn_algorithms)."""
        self.tunnel_log_issues = [f"supervisor.log: {l}" for l in bad]
        self.tunnel_algorithms = algorithms
        self.pinned = pinned
        pair = "/".join(pinned)
        if algorithms and any(pair not in a.split() for a in algorithms):
            self.notes.append(f"tunnel did not always negotiate {pair} (" +
                              "; ".join(algorithms) + "): the same-algorithms column is not like for like")

    def print_header(self, tb, m):
        print()
        print(f"machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}")
        print(f"ssh: {m['openssh']}; libssh2: {m['libssh2']}; PostgreSQL {m['postgresql']}")
        print(f"tunnel: {tb.tunnel_version} ({m['tunnel_commit']}, binary sha256 {tb.tunnel_sha[:12]}); "
              f"nofile {m['nofile']}, somaxconn {m['somaxconn']}; mode: {'smoke' if self.args.smoke else 'full'}")
        print("tunnel profiles: the default (host, port, user, identity, known_hosts, forward; nothing tuned) for "
              "every row; lazy adds lazy = true, the jump rows jump = the bastion; a profile with "
              f"sessions = {self.args.sessions} is context only; ssh -L uses one connection")

    def row_title(self, row):
        title = ROWS[row][0]
        if row == "idle":
            return f"idle, {self.p['idle_n']} tunnels, {self.p['idle_s']} s"
        if row in SCALE:
            return title.replace("scale:", f"scale ({self.p['scale_n']} tunnels):")
        if row == "conns":
            return f"{self.p['conns_n']:,} idle connections: RSS each"
        return title

    def cells(self, row, r):
        """The tunnel, ssh and ssh_default cells of a row."""
        vals = {v: (r[v]["value"] if r[v] else None) for v in VARIANTS}
        cells = {v: fmt_value(row, vals[v]) for v in VARIANTS}
        det = {v: (r[v].get("detail") if r[v] else None) or {} for v in VARIANTS}
        if r["error"]:
            cells["tunnel"] = "not measured"
            return cells
        for v in VARIANTS:
            d = det[v]
            if not r[v]:
                continue
            if row == "fanout":
                cells[v] += f", {d['failures']} failed"
            if row in ("query", "up", "down") and d.get("median_of"):
                cells[v] += f" (median of {d['median_of']})"
            if row == "busy":
                procs = d.get("forwarder_processes", 1)
                cells[v] += (f" ({d['threads_max']} threads" + (f" in {procs} processes" if procs > 1 else "")
                             + (f", median of {d['median_of']})" if d.get("median_of") else ")"))
            if row in ("latency", "connect"):
                cells[v] += f" (p99 {d['p99_us']:.0f} µs)"
            if row in ("cpu_gb", "cpu_tx"):
                cells[v] += f" (sshd {d['sshd']:.{2 if row == 'cpu_gb' else 3}f})"
            if row == "conns":
                cells[v] += f" ({d['open']:,} open, {d['rss_held_mib']:.0f} MiB)"
            if row.startswith("jump_") and v != "tunnel":
                cells[v] += " (ssh -J)"
            if row == "scale_threads":
                cells[v] += f" ({d['fds']} fds)"
        if row == "idle":
            for v in ("ssh", "ssh_default"):
                cells[v] += f" (sum of {self.p['idle_n']})"
        return cells

    def print_table(self):
        """The table, then the context and notes below it; returns (targets met, rows with a target)."""
        head = ["row", "tunnel", "ssh -L (same algorithms)", "ratio", "target", "met?", "ssh -L (default algorithms)"]
        lines = []
        met = total = 0
        for row in ROW_ORDER:
            if row not in self.results:
                continue
            r = self.results[row]
            if r["met"] is not None:
                total += 1
                met += r["met"]
            cells = self.cells(row, r)
            ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "—"
            if r["ratio"] is not None and ROWS[row][3] is not None and ratio == f"{ROWS[row][3]:.2f}":
                ratio = f"{r['ratio']:.3f}"   # rounding must not hide which side of the target it fell
            lines.append([self.row_title(row), cells["tunnel"], cells["ssh"], ratio, r["target"],
                          "—" if r["met"] is None else ("yes" if r["met"] else "NO"), cells["ssh_default"]])
        widths = [max(len(head[i]), *(len(l[i]) for l in lines)) if lines else len(head[i]) for i in range(len(head))]

        def fmt(cells):
            return "| " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(cells)) + " |"
        print()
        print(fmt(head))
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for l in lines:
            print(fmt(l))
        print()
        for row in ROW_ORDER:
            if row in self.results and self.results[row]["error"]:
                print(f"{row}: not measured: {self.results[row]['error']}")
        missed = [self.row_title(r) for r in ROW_ORDER if r in self.results and self.results[r]["met"] is False]
        if missed:
            print("missed their target: " + "; ".join(missed))
        print("seconds per row: " + ", ".join(f"{r} {self.results[r].get('seconds', 0):.0f}" for r in ROW_ORDER
                                              if r in self.results and self.results[r].get("seconds", 0) >= 0.5))
        self.print_context()
        if self.tunnel_algorithms:
            print(f"tunnel negotiated: {'; '.join(self.tunnel_algorithms)}; ssh -L (same algorithms): "
                  f"-c {self.pinned[0]} -m {self.pinned[1]}")
        for n in self.notes:
            print(f"note: {n}")
        if self.tunnel_log_issues:
            print(f"supervisor log: {len(self.tunnel_log_issues)} warning/error lines (all in the JSON), e.g.:")
            for l in self.tunnel_log_issues[:5]:
                print(f"  {l[len('supervisor.log: '):][:300]}")
        return met, total

    def print_context(self):
        """The lines below the table: samples, direct and one-session runs, the libcrypto
        ceiling, fan-out failures and burst, warm start and the figures the tests once asserted."""
        ctx = []
        for key, label, unit in (("up_direct", "up", "Mbit/s"), ("down_direct", "down", "Mbit/s"),
                                 ("query_direct", "query", "tps"), ("storm_direct", "storm", "tps")):
            d = self.context.get(key)
            if d:
                v = d.get("received_mbit_s", d.get("tps"))
                ctx.append(f"{label} {v:,.0f} {unit}")
        if ctx:
            print("direct, no forwarding (context): " + ", ".join(ctx))
        for row, unit in (("up", "mbit_s"), ("down", "mbit_s"), ("query", "tps")):
            q = self.results.get(row)
            if q and not q["error"] and q["tunnel"] and q["ssh"] and q["tunnel"]["detail"].get(f"samples_{unit}"):
                t, sh = q["tunnel"]["detail"][f"samples_{unit}"], q["ssh"]["detail"][f"samples_{unit}"]
                print(f"{row} samples, in run order ({'Mbit/s' if unit == 'mbit_s' else unit}): tunnel "
                      + ", ".join(f"{x:,.0f}" for x in t) + "; ssh -L " + ", ".join(f"{x:,.0f}" for x in sh)
                      + "; ratio per round " + ", ".join(f"{a / b:.2f}" for a, b in zip(t, sh)))
        q = self.results.get("query")
        if q and not q["error"] and q["tunnel"] and q["ssh"]:
            line = machine_share(q["tunnel"]["detail"], q["ssh"]["detail"])
            if line:
                print(f"query, the whole machine ({os.cpu_count()} cores): " + line)
        b = self.results.get("busy")
        if b and not b["error"] and b["tunnel"] and b["ssh"]:
            t, sh = b["tunnel"]["detail"], b["ssh"]["detail"]
            print(f"busy, per tunnel (Mbit/s, the sample nearest the median): tunnel "
                  + ", ".join(f"{x:,.0f}" for x in t["per_tunnel_mbit_s"])
                  + f" (supervisor threads {t['threads_before']} before, {t['threads_min']}–{t['threads_max']} during); "
                  + "ssh -L " + ", ".join(f"{x:,.0f}" for x in sh["per_tunnel_mbit_s"])
                  + (f"; samples, in run order: tunnel " + ", ".join(f"{x:,.0f}" for x in t["samples_mbit_s"])
                     + "; ssh -L " + ", ".join(f"{x:,.0f}" for x in sh["samples_mbit_s"])
                     if t.get("samples_mbit_s") and sh.get("samples_mbit_s") else ""))
        d, r = self.context.get("query_tuned"), self.results.get("query")
        if d:
            ssh = r["ssh"]["value"] if r and r.get("ssh") else None
            print(f"query through a tuned profile, sessions = {d['sessions']} (context, never the row): {d['tps']:,.0f} tps"
                  + (f" ({d['tps'] / ssh:.2f} of ssh -L)" if ssh else ""))
        ctx = []
        for row in ("latency", "connect"):
            d = self.context.get(f"{row}_direct")
            if d and row in self.results and not self.results[row]["error"]:
                t, sh = self.results[row]["tunnel"]["detail"], self.results[row]["ssh"]["detail"]
                p99 = f"{t['added_p99_us'] / sh['added_p99_us']:.2f}" if sh["added_p99_us"] > 0 else "—"
                ctx.append(f"{row}: direct p50 {d['p50_us']:.0f} µs, p99 {d['p99_us']:.0f}; tunnel p50 {t['p50_us']:.0f}, "
                           f"p99 {t['p99_us']:.0f}; ssh -L p50 {sh['p50_us']:.0f}, p99 {sh['p99_us']:.0f}; "
                           f"added p99 ratio {p99}")
        if ctx:
            print("latency, 64-byte round trips, ratio = (tunnel − direct) / (ssh − direct): " + " | ".join(ctx))
        sc = next((self.results[r]["tunnel"]["detail"] for r in SCALE if r in self.results and self.results[r]["tunnel"]), None)
        if sc:
            print(f"scale: {sc['tunnels']} tunnels up in {sc['up_s']:.1f} s; supervisor RSS {sc['rss_mib']:.1f} MiB, "
                  f"{sc['threads']} threads, {sc['fds']} fds, idle {sc['idle_cpu_s_per_min']:.3f} CPU s/min "
                  f"(over {sc['idle_window_s']} s), ls --json {sc['ls_json_s']:.3f} s; {sc['sshd_processes']} sshd processes"
                  + ("" if sc["tunnels"] >= 300 else " (smoke: the targets are for 300 tunnels)"))
        cn = self.results.get("conns")
        if cn and not cn["error"]:
            parts = []
            for v in ("tunnel", "ssh"):
                d = cn[v]["detail"] if cn[v] else None
                if d:
                    parts.append(f"{v}: {d['open']:,} open after {d['opened_in_s'] or 0:.1f} s, RSS {d['rss_before_mib']:.1f} → "
                                 f"{d['rss_held_mib']:.1f} MiB, {d['fds_held']:,} fds, {d['threads']} threads, {d['failures']} failed")
            print("idle connections held open: " + "; ".join(parts))
        for row in ("cpu_gb", "cpu_tx"):
            c = self.results.get(row)
            if c and not c["error"]:
                t, sh = c["tunnel"]["detail"], c["ssh"]["detail"]
                what = "GB moved (iperf3 up + down)" if row == "cpu_gb" else "1,000 transactions (pgbench -S -c 8)"
                print(f"CPU per {what}: tunnel {t['forwarder']:.3f} s + its sshd {t['sshd']:.3f} s = "
                      f"{t['forwarder'] + t['sshd']:.3f}; ssh -L {sh['forwarder']:.3f} s + its sshd {sh['sshd']:.3f} s = "
                      f"{sh['forwarder'] + sh['sshd']:.3f}")
        cc = self.context.get("crypto_ceiling")
        if cc:
            print(f"libcrypto on this CPU, one core, one direction: aes128-ctr in stock libssh2's 16-byte calls "
                  f"{cc['aes_16_byte_calls_mb_s']:,.0f} MB/s, through tunnel's batched keystream "
                  f"{cc['aes_16_byte_calls_batched_mb_s']:,.0f} MB/s, whole packets (OpenSSH, tunnel's libssh2) {cc['aes_bulk_mb_s']:,.0f} MB/s; "
                  f"{cc['mac']} {cc['hmac_mb_s']:,.0f} MB/s; crypto-only ceiling "
                  f"{cc['libssh2_ceiling_mbit_s']:,.0f} Mbit/s for libssh2, {cc['tunnel_ceiling_mbit_s']:,.0f} for tunnel, "
                  f"{cc['openssh_ceiling_mbit_s']:,.0f} for OpenSSH (tunnel/OpenSSH "
                  f"{cc['tunnel_ceiling_mbit_s'] / cc['openssh_ceiling_mbit_s']:.2f})")
        fan = self.results.get("fanout")
        if fan and not fan["error"]:
            for v in VARIANTS:
                d = fan[v]["detail"] if fan[v] else None
                if d and d["failures"]:
                    kinds = ", ".join(f"{n} {k}" for k, n in d["failures_by_kind"].items() if n)
                    print(f"fan-out failures through {v}: {d['failures']} of {d['connections']} ({kinds}; "
                          f"first after {d['failed_at_s']['min']:.1f} s, last after {d['failed_at_s']['max']:.1f} s); "
                          f"e.g. {d['examples'][0]}")
        fb = self.context.get("fanout_burst")
        if fb and fb.get("tunnel") and fb.get("ssh"):
            t, sh = fb["tunnel"], fb["ssh"]
            print(f"fan-out burst (context; all {self.p['fan_n']:,} connect at once, so ssh -L's listen backlog of 128 "
                  f"overflows): tunnel {t['wall_s']:.2f} s, {t['failures']} failed, peak RSS {t['peak_rss_mib']:.1f} MiB; "
                  f"ssh -L {sh['wall_s']:.2f} s, {sh['failures']} failed, peak RSS {sh['peak_rss_mib']:.1f} MiB")
        pf = self.context.get("page_faults")
        if pf:
            print(f"context: page faults of tunnel while {2 * pf['echoed_mib']} MiB crossed one tunnel "
                  f"(after {pf['warm_up_mib']} MiB to warm up): {pf['minor_faults']:,} "
                  f"(test bound was < {pf['test_bound']:,})")
        rb = self.context.get("rss_backpressure")
        if rb:
            print(f"context: tunnel's RSS with a client that writes and never reads ({rb['stuck_mib']:.0f} MiB went in "
                  f"before a send blocked): {rb['stalled_growth_mib']:+.1f} MiB over {rb['baseline_mib']:.1f} MiB "
                  f"(test bound was < {rb['stalled_bound_mib']} MiB); with {rb['idle_connections']} idle connections "
                  f"more: {rb['idle_growth_mib']:+.1f} MiB (test bound was < {rb['idle_bound_mib']} MiB)")
        if "start" in self.results and self.results["start"]["tunnel"]:
            d = self.results["start"]["tunnel"]["detail"]
            print(f"start, tunnel with the supervisor already running (warm): {d['warm_median_ms']:.0f} ms median")
        late = self.context.get("late_session")
        if late:
            low, high = late["test_window_s"]
            said = re.search(r"\d+ of \d+ SSH connections up", late["note"] or "")
            print(f"context: tunnel up (cold), sessions = 2, the second SSH connection's server silent "
                  f"{late['late_by_s']} s, connect_timeout = {late['connect_timeout_s']}: returned after "
                  f"{late['seconds']:.2f} s, {repr(said.group(0)) if said else 'no note of a missing connection'} "
                  f"(test window was {low}–{high} s)")

    def write_json(self, tb, machine, met, total):
        """bench-results/latest.json: machine, binary, parameters, commands, every record and the context."""
        os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
        doc = {
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "mode": "smoke" if self.args.smoke else "full",
            "duration_s": round(time.monotonic() - self.t_start, 1),
            "machine": machine,
            "tunnel": {"binary": tb.tunnel_source, "given_with_binary_option": bool(self.args.binary),
                       "sha256": tb.tunnel_sha, "version": tb.tunnel_version},
            "parameters": {**self.p, "tuned_context_sessions": self.args.sessions},
            "commands": {
                "ssh": " ".join(tb.ssh_argv("ssh", "LOCAL", "TARGET")),
                "ssh_default": " ".join(tb.ssh_argv("ssh_default", "LOCAL", "TARGET")),
                "tunnel_profile_example": open(tb.config).read().split("\n\n")[0],
            },
            "rows": {row: dict(r, label=self.row_title(row)) for row, r in self.results.items()},
            "context": self.context,
            "tunnel_negotiated": self.tunnel_algorithms,
            "supervisor_log_warnings": self.tunnel_log_issues[:200],
            "notes": self.notes,
            "summary": {"met": met, "total": total,
                        "missed": [r for r in ROW_ORDER if r in self.results and self.results[r]["met"] is False]},
            "chart": os.path.basename(CHART),
        }
        tmp = RESULTS + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, RESULTS)

    def write_chart(self):
        """bench-results/latest.png from latest.json (Scripts/bench_lib/chart.py), in this
        interpreter when it has matplotlib, else in Debian's /usr/bin/python3 (where
        python3-matplotlib installs); says so and carries on when neither has it."""
        rel = os.path.relpath(CHART, os.getcwd()) if CHART.startswith(os.getcwd()) else CHART
        try:
            chart.draw(RESULTS, CHART)
            print(f"chart: {rel}")
            return CHART
        except ImportError:
            pass
        system = "/usr/bin/python3"
        if os.path.exists(system) and os.path.realpath(system) != os.path.realpath(sys.executable):
            p = subprocess.run([system, chart.__file__, RESULTS, CHART], capture_output=True, text=True, timeout=120)
            if p.returncode == 0:
                print(f"chart: {rel} (drawn by {system})")
                return CHART
            if "No module named 'matplotlib'" not in p.stderr:
                print(f"chart: not written: {p.stderr.strip()[-300:]}")
                return None
        print("chart: not written, python3-matplotlib is not installed (apt-get install python3-matplotlib); "
              "the table and the JSON are complete without it")
        return None

    def print_summary(self, met, total):
        elapsed = time.monotonic() - self.t_start
        print(f"results: {os.path.relpath(RESULTS, os.getcwd()) if RESULTS.startswith(os.getcwd()) else RESULTS}; "
              f"took {elapsed:.0f} s")
        print(f"bench: {met} of {total} targets met"
              + (f" (rows of figures without a target: {sum(1 for r in self.results.values() if r['met'] is None)})"
                 if any(r["met"] is None for r in self.results.values()) else ""))

    def smoke_problems(self):
        """Why a --smoke run fails: rows not measured, fan-out failures, links without CCryptoCalls' shortcuts,
        a crypto ceiling that could not be built or run."""
        unmeasured = [r for r, v in self.results.items() if v["error"]]
        fan = self.results.get("fanout")
        fan_failures = 0
        if fan and not fan["error"]:
            fan_failures = sum(fan[v]["detail"]["failures"] for v in VARIANTS if fan[v])
        # tunnel must take the burst too; ssh -L's backlog may drop some of it.
        fan_failures += (self.context.get("fanout_burst", {}).get("tunnel") or {}).get("failures", 0)
        # The release build must bind libssh2's libcrypto calls to
        # CCryptoCalls (batched keystream, prefetched HMAC digest, kept HMAC
        # keys, pooled padding): a linker change that loses them would only show as slower rows.
        # "whole-packet cipher": the build runs on tunnel's libssh2 (Patches/libssh2), not the system's.
        shortcuts = ("whole-packet cipher", "batched keystream", "prefetched HMAC digest", "kept HMAC keys", "pooled padding")
        missing = [a for a in self.tunnel_algorithms if "ctr/" in a and not all(s in a for s in shortcuts)]
        return ([f"not measured: {', '.join(unmeasured)}"] if unmeasured else []) \
            + ([f"{fan_failures} fan-out failures"] if fan_failures else []) \
            + ([f"links without CCryptoCalls' shortcuts: {'; '.join(missing)}"] if missing else []) \
            + ([self.ceiling_failure] if self.ceiling_failure else []) \
            + ([] if self.tunnel_algorithms else ["supervisor.log names no negotiated algorithms"])
