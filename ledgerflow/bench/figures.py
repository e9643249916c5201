"""The figures, computed from one run's raw trial results (pure)."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from ledgerflow.bench.stats import Figure, figure, judge, median, paired_ratio

P99_LIMIT_MS = 50.0


def _pick(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [float(r[key]) if r.get(key) is not None else math.nan for r in rows]


def _redis(rows: list[dict[str, Any]]) -> list[float]:
    return [r["redis"]["round_trips_per_event"] if "redis" in r else math.nan for r in rows]


def latency_rounds(sse: dict[str, Any]) -> list[dict[str, float]]:
    """Per judged round: SSE event-frame p50/p99, raw Kafka p50/p99 (ms), share delivered."""
    rounds: dict[int, dict[str, float]] = {}
    for w in sse.get("windows", []):
        if w["kind"] not in ("raw", "sse"):
            continue
        row = rounds.setdefault(w["round"], {})
        lat = w.get("latency", {})
        if w["kind"] == "raw":
            raw = lat.get("raw", {})
            row["raw_p50"], row["raw_p99"] = raw.get("p50_ms", math.nan), raw.get("p99_ms", math.nan)
        else:
            ev = lat.get("MessageSubmitted", {})
            row["sse_p50"], row["sse_p99"] = ev.get("p50_ms", math.nan), ev.get("p99_ms", math.nan)
            row["delivered"] = ev.get("count", 0) / w["sent"] if w.get("sent") else math.nan
    return [rounds[k] for k in sorted(rounds)]


def with_worker(sse: dict[str, Any]) -> dict[str, float]:
    """The unjudged window with the worker busy: event and decision frame percentiles (ms)."""
    for w in sse.get("windows", []):
        if w["kind"] == "sse+worker":
            ev, dec = w["latency"].get("MessageSubmitted", {}), w["latency"].get("PolicyDecision", {})
            return {
                "sse_p50": ev.get("p50_ms", math.nan),
                "sse_p99": ev.get("p99_ms", math.nan),
                "decision_p50": dec.get("p50_ms", math.nan),
                "decision_p99": dec.get("p99_ms", math.nan),
                "delivered": ev.get("count", 0) / w["sent"] if w.get("sent") else math.nan,
            }
    return {}


def _codec_rows(codec: dict[str, Any]) -> dict[str, dict[str, float]]:
    names = {"ledgerflow codec": "ours", "avro reference": "avro", "orjson, dict only": "orjson"}
    out = {}
    for row in codec.get("rows", []):
        for prefix, short in names.items():
            if row["name"].startswith(prefix):
                out[short] = row
    return out


def compute(doc: dict[str, Any]) -> list[Figure]:
    got = doc["collected"]
    sat, cpu = got["saturation"], got["cpu"]
    pipeline, passthrough, naive = sat.get("pipeline", []), sat.get("passthrough", []), sat.get("naive", [])
    figures = [
        figure(
            1,
            "live pipeline ÷ raw getmany+send_batch passthrough",
            _pick(pipeline, "rate"),
            _pick(passthrough, "rate"),
            "events/s",
            ">= 0.15",
            note="stretch 0.25",
        ),
        figure(
            2,
            "projection rebuild, one process ÷ raw getmany consume",
            [r["rebuild"]["rate"] for r in got["rebuild"]],
            [r["raw"]["rate"] for r in got["rebuild"]],
            "records/s",
            ">= 0.5",
        ),
        figure(
            3,
            f"CPU-s per million events at {doc['plan']['cpu_rate']:.0f}/s, pipeline ÷ passthrough",
            _pick(cpu.get("pipeline", []), "cpu_s_per_million"),
            _pick(cpu.get("passthrough", []), "cpu_s_per_million"),
            "CPU-s/M events",
            "<= 1.3",
        ),
        figure(
            4,
            "Redis round trips per event at saturation (baseline: naive agent)",
            _redis(pipeline),
            _redis(naive),
            "round trips/event",
            "<= 0.01",
            absolute=True,
        ),
    ]
    lat = latency_rounds(got["sse"][0]) if got.get("sse") else []
    sse_p99, raw_p99 = [r.get("sse_p99", math.nan) for r in lat], [r.get("raw_p99", math.nan) for r in lat]
    f5 = figure(
        5,
        f"SSE p99 with {doc['plan']['subscribers']} subscribers ÷ raw Kafka produce→consume p99",
        sse_p99,
        raw_p99,
        "ms (p99)",
        "<= 3.0",
        note=f"and SSE p99 <= {P99_LIMIT_MS:.0f} ms",
    )
    met5 = f5.met and judge(median(sse_p99), f"<= {P99_LIMIT_MS}")
    figures.append(replace(f5, met=None if f5.met is None else bool(met5)))
    codec = _codec_rows(doc.get("codec", {}))
    ours_us = [codec["ours"]["encode_us"] + codec["ours"]["decode_us"]] if "ours" in codec else []
    avro_us = [codec["avro"]["encode_us"] + codec["avro"]["decode_us"]] if "avro" in codec else []
    orjson_us = (
        (codec["orjson"]["encode_us"] + codec["orjson"]["decode_us"]) if "orjson" in codec else math.nan
    )
    figures.append(
        figure(
            6,
            "codec encode+decode µs/record, ours ÷ avro package",
            ours_us,
            avro_us,
            "µs/record",
            "",
            note=f"orjson (dict only): {orjson_us:.2f} µs/record",
        )
    )
    figures.append(
        figure(
            7,
            "live pipeline ÷ textbook per-event faust agent",
            _pick(pipeline, "rate"),
            _pick(naive, "rate"),
            "events/s",
            ">= 15",
        )
    )
    figures.append(
        figure(
            8,
            "CPU µs per event in the worker at saturation",
            _pick(pipeline, "cpu_us_per_event"),
            [],
            "µs/event",
            "<= 150",
            absolute=True,
        )
    )
    worker = with_worker(got["sse"][0]) if got.get("sse") else {}
    rate = got["sse"][0].get("worker_rate", math.nan) if got.get("sse") else math.nan
    figures.append(
        figure(
            9,
            f"decision frame p99, produce → decision on SSE, at {rate:.0f} turns/s",
            [worker.get("decision_p99", math.nan)],
            [],
            "ms (p99)",
            f"<= {P99_LIMIT_MS:.0f}",
            absolute=True,
        )
    )
    figures += [
        figure(
            10,
            "projection rebuild, parallel processes ÷ raw getmany consume",
            [r["parallel"]["rate"] if "parallel" in r else math.nan for r in got["rebuild"]],
            [r["raw"]["rate"] for r in got["rebuild"]],
            "records/s",
            ">= 0.6",
        ),
        figure(
            11,
            "`ledgerflow audit` ÷ raw getmany consume (figure 2's)",
            [a["rate"] for a in got.get("audit", [])],
            [r["raw"]["rate"] for r in got["rebuild"]][: len(got.get("audit", []))],
            "records/s",
            ">= 0.3",
        ),
    ]
    return figures


def extra(doc: dict[str, Any]) -> dict[str, Any]:
    """Secondary numbers the summary quotes next to the figures."""
    got = doc["collected"]
    lat = latency_rounds(got["sse"][0]) if got.get("sse") else []
    return {
        "sse_p50_ms": median([r.get("sse_p50", math.nan) for r in lat]),
        "raw_p50_ms": median([r.get("raw_p50", math.nan) for r in lat]),
        "with_worker": with_worker(got["sse"][0]) if got.get("sse") else {},
        "sse_delivered": median([r.get("delivered", math.nan) for r in lat]),
        "commands_per_event": median(
            [r["redis"]["commands_per_event"] for r in got["saturation"].get("pipeline", []) if "redis" in r]
        ),
        "rebuild_round_trips_per_record": median(
            [
                r["rebuild"]["round_trips"] / r["rebuild"]["records"]
                for r in got["rebuild"]
                if r["rebuild"]["records"]
            ]
        ),
        "cpu_breakdown": {kind: _mean_breakdown(rows) for kind, rows in got["cpu"].items()},
        "pipeline_vs_naive_rate": paired_ratio(
            _pick(got["saturation"].get("pipeline", []), "rate"),
            _pick(got["saturation"].get("naive", []), "rate"),
        ),
    }


def _mean_breakdown(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Median CPU-s per million events of each process across rounds."""
    names = {n for r in rows for n in r["cpu_s"]}
    return {n: median([r["cpu_s"].get(n, math.nan) / r["events"] * 1e6 for r in rows]) for n in sorted(names)}
