"""The bench's chart: each row's ratio against its target, from bench-results/latest.json.

`python3 chart.py RESULTS.json OUT.png` (Scripts/bench runs it; run it by hand
to redraw). Needs matplotlib (Debian: python3-matplotlib); `draw` raises
ImportError without it. Rows with a ratio target show tunnel / ssh -L; rows
with an absolute bound show tunnel's figure / the bound (target 1.0); rows of
figures without a target show their ratio in grey. Log scale; the black mark
is the target, green met, red missed.
"""
import datetime
import json
import sys

# A figure of 0 (an idle process that used no measurable CPU) cannot sit on a log scale: drawn at this.
FLOOR = 0.01


def draw(results, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(results) as f:
        doc = json.load(f)
    items = []
    for row, rec in doc["rows"].items():
        if rec.get("error"):
            continue
        kind, bound = rec.get("kind"), rec.get("bound")
        if kind == "abs":
            val = rec["tunnel"]["value"] / bound if rec.get("tunnel") and bound else None
            label, tgt, better = f"{rec.get('label', rec['title'])} (÷ bound)", 1.0, "le"
        else:
            val, label, tgt, better = rec.get("ratio"), rec.get("label", rec["title"]), bound, kind
        if val is None or (val <= 0 and kind != "abs"):
            continue
        items.append((label, max(val, FLOOR), tgt, better, rec.get("met"), val))
    if not items:
        return False
    fig, ax = plt.subplots(figsize=(10, 0.36 * len(items) + 1.6))
    ys = list(range(len(items)))[::-1]
    colors = {True: "#2e8b57", False: "#c0392b", None: "#95a5a6"}
    ax.barh(ys, [i[1] for i in items], color=[colors[i[4]] for i in items], height=0.6)
    for y, (label, val, tgt, better, met, shown) in zip(ys, items):
        if tgt is not None:
            ax.plot([tgt, tgt], [y - 0.42, y + 0.42], color="black", linewidth=2)
        ax.text(max(val, tgt or 0) * 1.06, y, f"{shown:.2f}", va="center", fontsize=7)
    ax.set_yticks(ys)
    ax.set_yticklabels([i[0] for i in items], fontsize=8)
    ax.set_xscale("log")
    xs = [i[1] for i in items] + [i[2] for i in items if i[2]]
    lo, hi = min(xs) / 1.6, max(xs) * 2.0
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100) if lo <= t <= hi]
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{t:g}" for t in ticks], fontsize=8)
    ax.minorticks_off()
    ax.axvline(1.0, color="#555555", linewidth=0.6, linestyle=":")
    ax.set_xlabel("tunnel / ssh -L, log scale (÷ bound: tunnel's figure / its absolute bound)\n"
                  "black mark: target; green met, red missed, grey: figures without a target", fontsize=8)
    m = doc.get("machine", {})
    date = doc.get("date", datetime.date.today().isoformat())[:10]
    ax.set_title(f"tunnel vs ssh -L, {doc.get('mode', '?')} run {date}, {m.get('cores', '?')} cores, "
                 f"commit {m.get('tunnel_commit', '?')}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return True


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: chart.py RESULTS.json OUT.png")
    draw(sys.argv[1], sys.argv[2])
