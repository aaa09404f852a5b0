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
import time

from bench_lib.testbed import BUILT_TUNNEL, ROOT

RESULTS = os.path.join(ROOT, "bench-results", "latest.json")
ROW_ORDER = ["up", "down", "query", "storm", "fanout", "memory", "idle", "start", "lazy"]
ALIASES = {"throughput": ["up", "down"], "pgbench": ["query", "storm"], "all": ROW_ORDER,
           "fan-out": ["fanout"], "mem": ["memory"], "qps": ["query"], "tps": ["query"]}
VARIANTS = ["tunnel", "ssh", "ssh_default"]

# name, title, unit, target description, ratio bound, "ge" / "le" / "abs"
ROWS = {
    "up":     ("throughput up", "Mbit/s", "≥ 0.8", 0.8, "ge"),
    "down":   ("throughput down", "Mbit/s", "≥ 0.8", 0.8, "ge"),
    "query":  ("query rate", "tps", "≥ 1.2", 1.2, "ge"),
    "storm":  ("connection storm", "tps", "≥ 2.0", 2.0, "ge"),
    "fanout": ("fan-out", "s", "≤ 1.0, 0 failures", 1.0, "le"),
    "memory": ("memory", "MiB", "≤ 1.0", 1.0, "le"),
    "idle":   ("idle", "CPU s", "≤ 0.2 s absolute", 0.2, "abs"),
    "start":  ("start", "ms", "≤ 1.0", 1.0, "le"),
    "lazy":   ("lazy first client", "ms", "≤ 1.0", 1.0, "le"),
}


def fmt_value(row, v):
    """A figure as the table shows it."""
    if v is None:
        return "—"
    if row in ("up", "down"):
        return f"{v:,.0f} Mbit/s"
    if row in ("query", "storm"):
        return f"{v:,.0f} tps"
    if row == "fanout":
        return f"{v:.2f} s"
    if row == "memory":
        return f"{v:.1f} MiB"
    if row == "idle":
        return f"{v:.3f} s"
    if row in ("start", "lazy"):
        return f"{v:.0f} ms"
    return str(v)


def record(row, per_variant, error=None):
    """A row's result record from {variant: (value, detail)} (None with `error` when it was not
    measured): the values, the ratio tunnel / ssh -L, and whether the target was met."""
    title, unit, target_text, bound, kind = ROWS[row]
    r = {"title": title, "unit": unit, "target": target_text, "error": error}
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
    if error is None and t is not None:
        if kind == "abs":
            met = t <= bound
        elif ratio is not None:
            met = ratio >= bound if kind == "ge" else ratio <= bound
        if row == "fanout":
            failures = [per_variant[v][1].get("failures", 0) for v in ("tunnel", "ssh")]
            met = met and all(f == 0 for f in failures)
    r["met"] = met
    return r


class Report:
    """The results of one run: a record per row, the context, notes and what the supervisor log said."""

    def __init__(self, args, params):
        self.args = args
        self.p = params
        self.results = {}          # row -> record
        self.context = {}
        self.notes = []
        self.tunnel_log_issues = []
        self.tunnel_algorithms = []
        self.t_start = time.monotonic()

    def take_supervisor_log(self, bad, algorithms):
        """The warning/error lines and negotiated algorithms of Testbed.scan_supervisor_log."""
        self.tunnel_log_issues = [f"supervisor.log: {l}" for l in bad]
        self.tunnel_algorithms = algorithms
        if algorithms and any("aes128-ctr/hmac-sha2-512" not in a for a in algorithms):
            self.notes.append("tunnel did not always negotiate aes128-ctr/hmac-sha2-512 (" +
                              "; ".join(algorithms) + "): the same-algorithms column is not like for like")

    def print_header(self, tb, m):
        print()
        print(f"machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}")
        print(f"ssh: {m['openssh']}; libssh2: {m['libssh2']}; PostgreSQL {m['postgresql']}")
        print(f"tunnel: {tb.tunnel_version} ({m['tunnel_commit']}, binary sha256 {tb.tunnel_sha[:12]}); "
              f"nofile {m['nofile']}, somaxconn {m['somaxconn']}; mode: {'smoke' if self.args.smoke else 'full'}")
        print(f"tunnel profiles: sessions = {self.args.sessions} (SSH connections) for query, storm, start and fan-out; "
              f"1 for throughput and idle; max_sessions at its default (4: extra connections while clients queue "
              f"for channels); ssh -L always uses one")

    def print_table(self):
        """The table, then the context and notes below it; returns (targets met, rows)."""
        head = ["row", "tunnel", "ssh -L (same algorithms)", "ratio", "target", "met?", "ssh -L (default algorithms)"]
        lines = []
        met = total = 0
        for row in ROW_ORDER:
            if row not in self.results:
                continue
            r = self.results[row]
            total += 1
            met += r["met"]
            vals = {v: (r[v]["value"] if r[v] else None) for v in VARIANTS}
            cells = {v: fmt_value(row, vals[v]) for v in VARIANTS}
            if row == "fanout" and r["error"] is None:
                for v in VARIANTS:
                    d = r[v]["detail"] if r[v] else None
                    if d is not None:
                        cells[v] += f", {d['failures']} failed"
            if row in ("query", "up", "down") and r["error"] is None:
                for v in VARIANTS:
                    d = r[v]["detail"] if r[v] else None
                    if d and d.get("median_of"):
                        cells[v] += f" (median of {d['median_of']})"
            if row == "idle" and r["error"] is None:
                for v in ("ssh", "ssh_default"):
                    cells[v] += f" (sum of {self.p['idle_n']})"
            if r["error"]:
                cells["tunnel"] = "not measured"
            ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "—"
            if r["ratio"] is not None and ROWS[row][3] is not None and ratio == f"{ROWS[row][3]:.2f}":
                ratio = f"{r['ratio']:.3f}"   # rounding must not hide which side of the target it fell
            lines.append([r["title"], cells["tunnel"], cells["ssh"], ratio, r["target"],
                          "yes" if r["met"] else "NO", cells["ssh_default"]])
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
        self.print_context()
        if self.tunnel_algorithms:
            print(f"tunnel negotiated: {'; '.join(self.tunnel_algorithms)}; ssh -L (same algorithms): -c aes128-ctr -m hmac-sha2-512")
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
        ctx = []
        for row in ("query", "storm"):
            d = self.context.get(f"{row}_one_session")
            r = self.results.get(row)
            if d:
                ssh = r["ssh"]["value"] if r and r.get("ssh") else None
                ctx.append(f"{row} {d['tps']:,.0f} tps" + (f" ({d['tps'] / ssh:.2f} of ssh -L)" if ssh else ""))
        if ctx:
            print("tunnel with sessions = 1 (context): " + ", ".join(ctx))
        cc = self.context.get("crypto_ceiling")
        if cc:
            print(f"libcrypto on this CPU, one core, one direction: aes128-ctr in libssh2's 16-byte calls "
                  f"{cc['aes_16_byte_calls_mb_s']:,.0f} MB/s, through tunnel's batched keystream "
                  f"{cc['aes_16_byte_calls_batched_mb_s']:,.0f} MB/s, whole packets (OpenSSH) {cc['aes_bulk_mb_s']:,.0f} MB/s; "
                  f"hmac-sha2-512 {cc['hmac_sha2_512_mb_s']:,.0f} MB/s; crypto-only ceiling "
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
            "tunnel": {"binary": BUILT_TUNNEL, "sha256": tb.tunnel_sha, "version": tb.tunnel_version},
            "parameters": {**self.p, "sessions": self.args.sessions},
            "commands": {
                "ssh": " ".join(tb.ssh_argv("ssh", "LOCAL", "TARGET")),
                "ssh_default": " ".join(tb.ssh_argv("ssh_default", "LOCAL", "TARGET")),
                "tunnel_profile_example": open(tb.config).read().split("\n\n")[0],
            },
            "rows": self.results,
            "context": self.context,
            "tunnel_negotiated": self.tunnel_algorithms,
            "supervisor_log_warnings": self.tunnel_log_issues[:200],
            "notes": self.notes,
            "summary": {"met": met, "total": total},
        }
        tmp = RESULTS + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=2, default=str)
            f.write("\n")
        os.replace(tmp, RESULTS)

    def print_summary(self, met, total):
        elapsed = time.monotonic() - self.t_start
        print(f"results: {os.path.relpath(RESULTS, os.getcwd()) if RESULTS.startswith(os.getcwd()) else RESULTS}; "
              f"took {elapsed:.0f} s")
        print(f"bench: {met} of {total} targets met")

    def smoke_problems(self):
        """Why a --smoke run fails: rows not measured, fan-out failures, links without CCryptoCalls' shortcuts."""
        unmeasured = [r for r, v in self.results.items() if v["error"]]
        fan = self.results.get("fanout")
        fan_failures = 0
        if fan and not fan["error"]:
            fan_failures = sum(fan[v]["detail"]["failures"] for v in VARIANTS if fan[v])
        # tunnel must take the burst too; ssh -L's backlog may drop some of it.
        fan_failures += (self.context.get("fanout_burst", {}).get("tunnel") or {}).get("failures", 0)
        # The release build must bind libssh2's libcrypto calls to
        # CCryptoCalls (batched keystream, prefetched HMAC digest, pooled
        # padding): a linker change that loses them would only show as slower rows.
        shortcuts = ("batched keystream", "prefetched HMAC digest", "pooled padding")
        missing = [a for a in self.tunnel_algorithms if "ctr/" in a and not all(s in a for s in shortcuts)]
        return ([f"not measured: {', '.join(unmeasured)}"] if unmeasured else []) \
            + ([f"{fan_failures} fan-out failures"] if fan_failures else []) \
            + ([f"links without CCryptoCalls' shortcuts: {'; '.join(missing)}"] if missing else []) \
            + ([] if self.tunnel_algorithms else ["supervisor.log names no negotiated algorithms"])
