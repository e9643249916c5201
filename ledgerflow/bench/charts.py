"""PNG charts of one run (matplotlib, headless Agg backend)."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

from ledgerflow.bench.figures import latency_rounds
from ledgerflow.bench.stats import Figure


def _plt() -> ModuleType:
    """matplotlib.pyplot on the headless backend, imported on first use (the bench extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _clean(values: tuple[float, ...]) -> list[float]:
    return [v for v in values if v is not None and not math.isnan(v)]


LABELS = {
    1: ("pipeline", "passthrough"),
    2: ("rebuild", "raw consume"),
    3: ("pipeline", "passthrough"),
    4: ("pipeline", "naive agent"),
    5: ("SSE", "raw Kafka"),
    6: ("ours", "avro pkg"),
    7: ("pipeline", "naive agent"),
    10: ("parallel rebuild", "raw consume"),
    11: ("audit", "raw consume"),
}


def figures_chart(figures: list[Figure], path: Path, caption: str = "") -> Path:
    """One panel per figure: ours vs baseline (median bar, each round a dot), ratio and goal in the title."""
    plt = _plt()
    rows = math.ceil((len(figures) + 1) / 4)  # a panel for every figure, and one for the caption
    fig, axes = plt.subplots(rows, 4, figsize=(17, 4.25 * rows))
    for ax, f in zip(axes.flat, figures, strict=False):
        labels = list(LABELS.get(f.number, ("ours", "baseline")))
        medians = [0 if math.isnan(f.ours) else f.ours, 0 if math.isnan(f.baseline) else f.baseline]
        bars = ax.bar(labels, medians, color=["#2a6f97", "#adb5bd"])
        ax.bar_label(bars, labels=[f"{m:,.0f}" if m >= 100 else f"{m:.3g}" for m in medians], fontsize=8)
        for x, runs in enumerate((f.ours_runs, f.baseline_runs)):
            ys = _clean(runs)
            ax.scatter([x] * len(ys), ys, color="black", s=12, zorder=3)
        verdict = {True: "met", False: "MISSED", None: "not judged" if f.goal else "no goal"}[f.met]
        value = "n/a" if math.isnan(f.value) else f"{f.value:.3g}"
        goal = f"goal {f.goal}" if f.goal else "no goal"
        title = textwrap.fill(f"{f.number}. {f.name}", 48)
        ax.set_title(f"{title}\n= {value} ({goal}; {verdict})", fontsize=8.5)
        ax.set_ylabel(f.unit, fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(figures) :]:
        ax.axis("off")
    if len(figures) < rows * 4 and caption:
        axes.flat[-1].text(0, 1, textwrap.fill(caption, 52), va="top", fontsize=8.5, family="monospace")
    fig.suptitle(
        "ledgerflow bench: each figure against its baseline in the same run (bars: medians; dots: rounds)"
    )
    return _saved(plt, fig, path)


def latency_chart(sse: dict[str, Any], path: Path) -> Path:
    """p50 and p99 per round: raw Kafka, SSE event frames."""
    plt = _plt()
    rounds = latency_rounds(sse)
    fig, ax = plt.subplots(figsize=(9, 4.5))
    series = (("raw", "raw Kafka produce→consume"), ("sse", "SSE event frame"))
    width = 0.8 / len(series)
    for i, (key, label) in enumerate(series):
        xs = [r + i * width for r in range(len(rounds))]
        p50 = [row.get(f"{key}_p50", math.nan) for row in rounds]
        p99 = [row.get(f"{key}_p99", math.nan) for row in rounds]
        ax.bar(xs, p99, width, alpha=0.45, label=f"{label} p99")
        ax.scatter(xs, p50, marker="_", s=300, color="black", zorder=3)
    ax.axhline(50, color="red", linestyle="--", linewidth=1, label="50 ms goal (SSE p99)")
    ax.set_xticks([r + width for r in range(len(rounds))], [f"round {r + 1}" for r in range(len(rounds))])
    ax.set_ylabel("latency, ms (bars p99, ticks p50)")
    ax.set_title(
        f"SSE end-to-end with {sse.get('opened', 0)} subscribers at {sse.get('rate', 0):.0f} events/s"
    )
    ax.legend(fontsize=8)
    return _saved(plt, fig, path)


def codec_chart(codec: dict[str, Any], path: Path) -> Path:
    """µs per record to encode and decode, per codec row (log scale)."""
    plt = _plt()
    rows = codec.get("rows", [])
    fig, ax = plt.subplots(figsize=(9, 4))
    names = [r["name"].split(" (")[0] for r in rows]
    ys = range(len(rows))
    ax.barh([y - 0.2 for y in ys], [r["encode_us"] for r in rows], 0.4, label="encode")
    ax.barh([y + 0.2 for y in ys], [r["decode_us"] for r in rows], 0.4, label="decode")
    ax.set_yticks(list(ys), names, fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("µs per record (log scale)")
    ax.set_title("6. codec: one realistic MessageSubmitted")
    ax.legend()
    return _saved(plt, fig, path)


def _saved(plt: Any, fig: Any, path: Path) -> Path:
    """Lay ``fig`` out, write it to ``path`` and free it."""
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
