"""Codec micro-benchmark: µs per record to encode and decode a realistic MessageSubmitted
(and the PolicyDecision the policy agent writes for it).

    python -m ledgerflow.bench.codec [n]

Each row is timed over ``n`` records in a tight loop (the `avro` reference package over
n/10, it is slow), repeated 5 times; the median run is reported. Time is the thread's CPU
time, so other jobs on a shared machine inflate it less than wall time would.
"""

from __future__ import annotations

import dataclasses
import io
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import avro.io
import avro.schema
import orjson
from fastavro import schemaless_reader, schemaless_writer

from ledgerflow.contracts.codec import MAGIC, decode, encode, fast_codec_loaded
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.contracts.registry import default_registry
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.policy import TrainingState
from ledgerflow.policy.wire import decide

RUNS = 5
_NOW = 1_795_000_000_000_000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def sample_event() -> Event:
    """A user turn of typical size (~300 characters) with a trace id and token count."""
    content = (
        "Hi! I'm comparing two quotes for our office move next month. Quote A is 4,200 EUR "
        "including packing, quote B is 3,650 EUR without packing but with insurance up to "
        "50k. Could you draft a short reply to B asking what packing would cost, and list "
        "the questions I should ask both about damage claims?"
    )
    return new_event(
        "MessageSubmitted",
        tenant="acme",
        subject="conv-6f1c3c52",
        producer="gateway",
        occurred_at_micros=_NOW,
        event_id="0193a7a4-5f3e-7c21-9d55-2f1f0c2f7a10",
        trace_id="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        payload=MessageSubmitted(
            turn_id="t-17", role="user", content=content, model="slm-1", tokens=71, language="en"
        ),
    )


def sample_decision(event: Event, wire: bytes) -> Event:
    """The chained decision the policy agent writes for ``event`` (default pack, training off)."""
    decision = decide(event, wire, builtin_default_pack(), TrainingState(False, 0), None)
    assert decision is not None  # a turn always gets a decision
    return decision


def _per_record_us(fn: Callable[[], Any], n: int) -> float:
    runs = []
    for _ in range(RUNS):
        start = time.thread_time_ns()
        for _ in range(n):
            fn()
        runs.append((time.thread_time_ns() - start) / n / 1000)
    return statistics.median(runs)


def run(n: int = 20000) -> dict[str, Any]:
    """Measure every row; returns {"n", "runs", "fastavro_c", "python", "rows": [...]}."""
    event = sample_event()
    entry = default_registry().get(event.type, event.schema_version)
    wire = encode(event)
    record = {
        **{f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "payload"},
        "payload": event.payload.to_record(),
    }

    def fastavro_encode() -> bytes:
        out = io.BytesIO()
        schemaless_writer(out, entry.wire, record)
        return out.getvalue()

    def fastavro_decode() -> Any:
        return schemaless_reader(io.BytesIO(wire[10:]), entry.wire, None)

    reference = avro.schema.parse(json.dumps(entry.schema))
    ref_writer, ref_reader = avro.io.DatumWriter(reference), avro.io.DatumReader(reference)
    ref_record = {**record, "occurred_at": _EPOCH + timedelta(microseconds=event.occurred_at)}

    def avro_encode() -> bytes:
        out = io.BytesIO()
        out.write(MAGIC + entry.fingerprint)
        ref_writer.write(ref_record, avro.io.BinaryEncoder(out))
        return out.getvalue()

    def avro_decode() -> Any:
        body = io.BytesIO(wire)
        body.seek(10)
        return ref_reader.read(avro.io.BinaryDecoder(body))

    as_json = event.to_json()
    json_bytes = orjson.dumps(as_json)
    decision = sample_decision(event, wire)
    decision_wire = encode(decision)
    rows = [
        (
            "ledgerflow codec (Event <-> single-object bytes)",
            lambda: encode(event),
            lambda: decode(wire),
            len(wire),
            n,
        ),
        (
            "PolicyDecision v1 as the policy agent writes it (ledgerflow codec)",
            lambda: encode(decision),
            lambda: decode(decision_wire),
            len(decision_wire),
            n,
        ),
        (
            "fastavro schemaless, dict only (no envelope checks)",
            fastavro_encode,
            fastavro_decode,
            len(wire),
            n,
        ),
        (
            "avro reference package (same framing)",
            avro_encode,
            avro_decode,
            len(avro_encode()),
            max(1, n // 10),
        ),
        (
            "orjson, dict only",
            lambda: orjson.dumps(as_json),
            lambda: orjson.loads(json_bytes),
            len(json_bytes),
            n,
        ),
        (
            "edge JSON (Event.to_json/from_json + orjson)",
            lambda: orjson.dumps(event.to_json()),
            lambda: Event.from_json(orjson.loads(json_bytes), now_micros=_NOW, accept_chain_fields=True),
            len(json_bytes),
            n,
        ),
    ]
    return {
        "n": n,
        "runs": RUNS,
        "fastavro_c": fast_codec_loaded(),
        "python": platform.python_version(),
        "rows": [
            {
                "name": name,
                "encode_us": _per_record_us(enc, count),
                "decode_us": _per_record_us(dec, count),
                "bytes": size,
                "records": count,
            }
            for name, enc, dec, size, count in rows
        ],
    }


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    result = run(int(args[0])) if args else run()
    print("| codec | encode µs/record | decode µs/record | bytes | records/run |")
    print("|---|---:|---:|---:|---:|")
    for row in result["rows"]:
        print(
            f"| {row['name']} | {row['encode_us']:.2f} | {row['decode_us']:.2f} | "
            f"{row['bytes']} | {row['records']} |"
        )
    print()
    print(
        f"Median of {result['runs']} runs (thread CPU time), each a tight loop over the given number of "
        f"records, "
        f"on one realistic MessageSubmitted v2 (~300-character content, trace id, token count) "
        f"and the PolicyDecision the policy agent writes for it. "
        f"Python {result['python']}, fastavro C extension loaded: {result['fastavro_c']}."
    )


if __name__ == "__main__":
    main()
