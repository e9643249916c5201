"""Tracing overhead: µs per turn of the policy agent's hot path with spans off and on.

    python -m ledgerflow.bench.tracing_trial [n]

The path timed is the agent's per-turn work around the trace hook (and, for reference, the
same work without the hook at all): the ``spans.consumed``
hook (``agents/policy.py``) around decoding a turn, deciding it (``policy.wire.decide``) and
encoding the decision. *Off* is the default (no provider: the hook is a shared no-op); *on* is
an SDK provider with a batch processor, as with an OTLP endpoint, whose exporter drops the spans
(the network is not what is measured). Each variant runs ``n`` turns, 5 times; the median run
is reported. Times are CPU time of the process (the exporter's thread included), not wall
time: the machine may be shared.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from ledgerflow.bench.codec import sample_event
from ledgerflow.contracts import codec
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.policy import TrainingState
from ledgerflow.policy.wire import decide
from ledgerflow.tracing import spans

RUNS = 5
_NO_HOOK = contextlib.nullcontext()
TOPIC = "conversation.events"


class _Drop(SpanExporter):
    def export(self, batch: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


@dataclass(frozen=True, slots=True)
class _Record:
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    topic: str = TOPIC
    partition: int = 0
    offset: int = 0


@dataclass(frozen=True, slots=True)
class _Out:
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


def _one_run(records: list[_Record], hook: bool = True) -> float:
    pack, training = builtin_default_pack(), TrainingState(False, 0)
    out: list[_Out] = []
    began = time.process_time()  # CPU time: the machine may be shared; the exporter thread counts too
    for record in records:
        with spans.consumed(record, "decide", out) if hook else _NO_HOOK:
            event = codec.decode(record.value)
            decision = decide(event, record.value, pack, training, None)
            if decision is not None:
                out.append(_Out(codec.encode(decision)))
    return (time.process_time() - began) / len(records) * 1e6


def _hook_only(record: _Record, n: int) -> float:
    """µs of the hook alone around an empty block (nothing produced), CPU time."""
    out: list[_Out] = []
    began = time.process_time()
    for _ in range(n):
        with spans.consumed(record, "decide", out):
            pass
    return (time.process_time() - began) / n * 1e6


def run(n: int = 20000) -> dict[str, Any]:
    event = sample_event()
    header = (("traceparent", event.trace_id.encode()),) if event.trace_id else ()
    records = [_Record(codec.encode(event), header, offset=i) for i in range(n)]
    was_on = spans.enabled()
    if was_on:
        raise RuntimeError("spans are configured in this process; the trial measures off against on itself")
    without = statistics.median(_one_run(records, hook=False) for _ in range(RUNS))
    off = statistics.median(_one_run(records) for _ in range(RUNS))
    hook_off = statistics.median(_hook_only(records[0], n * 10) for _ in range(RUNS))
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Drop(), max_queue_size=max(n + 1, 2048)))
    spans.configure("bench", provider)
    try:
        on = statistics.median(_one_run(records) for _ in range(RUNS))
        hook_on = statistics.median(_hook_only(records[0], n) for _ in range(RUNS))
    finally:
        spans.disable()
    return {
        "records": n,
        "no_hook_us": round(without, 2),
        "off_us": round(off, 2),
        "on_us": round(on, 2),
        "overhead_us": round(on - off, 2),
        "overhead_pct": round((on - off) / off * 100, 1),
        "hook_off_us": round(hook_off, 3),
        "hook_on_us": round(hook_on, 2),
    }


def line(result: dict[str, Any]) -> str:
    """The report's sentence for a result of ``run``."""
    if not result:
        return "Tracing overhead: not measured."
    return (
        f"Tracing overhead (policy agent hot path, decode → decide → encode, {result['records']:,} turns, "
        f"`python -m ledgerflow.bench.tracing_trial`, CPU time): without the hook {result['no_hook_us']} "
        f"µs/turn, spans off {result['off_us']} µs/turn, on "
        f"{result['on_us']} µs/turn (+{result['overhead_us']} µs, +{result['overhead_pct']} %); the hook "
        f"alone {result['hook_off_us']} µs off, {result['hook_on_us']} µs on."
    )


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20000), indent=2))
