"""Latency percentiles per workload from loadgen's JSON lines, as a PNG.

bench/run.sh calls it as `python plot.py OUT.png RESULTS/DATE` and reads
RESULTS/DATE-<workload>.jsonl. Each bar is the median over a workload's
runs of one percentile; the y axis is logarithmic because the figures span
from a fraction of a millisecond (a history page) to seconds (a login under
load).
"""

import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display: render straight to the file
import matplotlib.pyplot as plt  # noqa: E402

PERCENTILES = [("p50", "p50"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max")]


def lines(prefix, workload):
    path = Path(f"{prefix}-{workload}.jsonl")
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series(prefix):
    """(label, [runs' latency objects]) in the order they are drawn."""
    out = []
    for workload in ("fanout", "rate"):
        runs = lines(prefix, workload)
        for broker in ("confab", "nats", "nats-tls"):
            picked = [r["latency_us"] for r in runs if r["broker"] == broker]
            out.append((f"{workload}\n{broker}", picked))
    ack = lines(prefix, "ack")
    out.append(("ack: send\n→ durable ack", [r["ack_us"] for r in ack if r.get("ack_us")]))
    slow = [r for r in lines(prefix, "slow") if r.get("stall", True)]
    for key, label in (
        ("before_us", "slow: others,\nall reading"),
        ("stalled_us", "slow: others,\none stalled"),
        ("catching_up_us", "slow: others,\nit catches up"),
    ):
        out.append((label, [r[key] for r in slow]))
    history = lines(prefix, "history")
    for key, label in (
        ("latest_us", "history: newest\n50 of 1M"),
        ("shown_after_login_us", "history: login\n→ 50 shown"),
        ("page_back_us", "history: one\npage back"),
        ("shown_us", "history: connect\n→ 50 shown"),
    ):
        out.append((label, [r[key] for r in history]))
    idle = [r for r in lines(prefix, "idle") if r.get("accounts_made") == "store"]
    out.append(("idle: login,\n16 in flight", [r["login_us"] for r in idle]))
    return [(label, runs) for label, runs in out if runs]


def main():
    out, prefix = sys.argv[1], sys.argv[2]
    data = series(prefix)
    if not data:
        sys.exit("plot.py: no results to plot")
    fig, ax = plt.subplots(figsize=(max(10, 0.85 * len(data) + 2), 5.5))
    width = 0.8 / len(PERCENTILES)
    for i, (key, name) in enumerate(PERCENTILES):
        xs = [n + (i - (len(PERCENTILES) - 1) / 2) * width for n in range(len(data))]
        ys = [statistics.median(run[key] for run in runs) / 1000 for _, runs in data]
        ax.bar(xs, ys, width, label=name)
    ax.set_yscale("log")
    ax.set_ylabel("latency, ms (log scale; median of the runs)")
    ax.set_xticks(range(len(data)))
    ax.set_xticklabels([label for label, _ in data], fontsize=8)
    ax.grid(axis="y", which="both", alpha=0.3)
    # Above the bars, where it hides none of them.
    ax.legend(ncol=len(PERCENTILES), loc="lower right", bbox_to_anchor=(1, 1), fontsize=8)
    date = Path(prefix).name
    ax.set_title(f"confab loadgen latency per workload, {date}", loc="left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
