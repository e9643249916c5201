"""A seconds-long smoke of ``ledgerflow bench --quick``: the harness measures every figure
against the real stack and writes its results. Never a timing assertion: the numbers of
a tiny run on a shared machine mean nothing, only that they were measured and written."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

from ledgerflow.bench import worker_latency
from ledgerflow.bench.report import DOCS
from ledgerflow.bench.run import bench_cli
from ledgerflow.config import Settings

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_bench_measures_every_figure_and_writes_json_charts_and_summary(
    stack: Settings, tmp_path: Path
) -> None:
    docs_before = DOCS.read_bytes() if DOCS.exists() else None

    code = bench_cli(stack, quick=True, runs=1, events=200, out_dir=str(tmp_path))

    assert code == 0, "the quick bench reported a failed trial (its stderr says which)"
    doc = json.loads((tmp_path / "quick.json").read_text())
    for key in (
        "run_id",
        "plan",
        "machine",
        "codec",
        "tracing",
        "collected",
        "figures",
        "extra",
        "latency_rounds",
    ):
        assert key in doc, f"quick.json lacks {key!r}"
    assert doc["machine"]["cores"] and doc["machine"]["memory_gib"], "the machine is not described"
    figures = {f["number"]: f for f in doc["figures"]}
    assert sorted(figures) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    for number, fig in figures.items():
        for key in ("name", "ours", "baseline", "value", "unit", "goal", "met", "ours_runs", "baseline_runs"):
            assert key in fig, f"figure {number} lacks {key!r}"
        for side in ("ours", "baseline"):
            if side == "baseline" and not fig["baseline_runs"]:
                continue  # an absolute figure (a value against its goal, no baseline)
            value = fig[side]
            assert value is not None and not math.isnan(value) and value > 0, (
                f"figure {number} ({fig['name']}) measured no {side} value: {value!r}"
            )
    sse = doc["collected"]["sse"][0]
    assert sse["opened"] == sse["subscribers"], "not every SSE subscriber got its stream"
    for name in ("quick-figures.png", "quick-latency.png", "quick-codec.png"):
        png = tmp_path / name
        assert png.exists() and png.stat().st_size > 1000, f"{name} missing or empty"
        assert png.read_bytes()[:8] == PNG_MAGIC, f"{name} is not a PNG"
    summary = (tmp_path / "quick.md").read_text()
    assert "| 11 |" in summary and "cores" in summary
    after = DOCS.read_bytes() if DOCS.exists() else None
    assert after == docs_before, "a --quick run must not rewrite docs/benchmarks.md"


def test_worker_latency_times_every_turn_sent_at_its_rate(stack: Settings) -> None:
    """``python -m ledgerflow.bench.worker_latency``: every timed turn is decided and timed once."""
    result = asyncio.run(worker_latency.main(stack, rate=50, seconds=2))
    assert result["sent"] >= 90 and result["decisions"] == result["sent"], result  # each decided once
    assert 0 < result["p50_ms"] <= result["p90_ms"] <= result["p99_ms"] <= result["max_ms"], result
