"""Well-formed but hostile ``usage.windows`` records never stop the hot path, never break a read
and never stop the audit, on the real broker, Redis, worker and edge.

Anyone who can write Kafka can append a ``UsageWindow`` that decodes. Before, two kinds were taken
as they came:
- ``LateUsage`` deltas (``revision < 0``) whose counts are added to a read-model field (HINCRBY)
  and push it past a 64-bit integer: Redis refused the increment inside the projector's batch
  script after the script had already marked the delta as counted, so the batch failed, was
  retried, and the delta was then dropped as a duplicate (no dead letter); the audit's rebuild,
  which sums in Python, could not write the sum back;
- a window whose bounds lie past what a date can hold: ``GET /v1/usage`` and ``GET
  /v1/forecast`` of its tenant answered 500 from then on.
Now such a record is refused by the contract (``invalid-envelope``): dead-lettered by the
projector, projected by no one, named by the audit, and every later record is projected.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from ledgerflow.audit.report import Report
from ledgerflow.config import Settings
from ledgerflow.dlq import read_dead_letters
from ledgerflow.topics import USAGE_WINDOWS
from ledgerflow.traffic import publish
from tests.integration.fuzzkit import wire_record
from tests.integration.test_audit import audit_at_rest
from tests.integration.test_projector_poison import TENANT, checkpoint, traffic, turns_in
from tests.support.processes import pipeline_settled, start

TIMEOUT_S = 90.0
INT64_MAX = 2**63 - 1
FAR_MICROS = 10**18  # year ~33,600: no datetime holds it


MINUTE = 60_000_000
AN_HOUR_AGO = (time.time_ns() // 1000 // MINUTE - 60) * MINUTE  # a window start the agent could write


def window(tokens: int, events: int, *, start: int = AN_HOUR_AGO, revision: int = -1) -> bytes:
    """A usage record under the usage agent's producer name (by default a ``LateUsage`` delta),
    written from outside with no validation: it decodes as Avro, and carries no chain fields."""
    payload = {
        "model": "slm-1",
        "window_start": start,
        "window_end": start + MINUTE,
        "tokens": tokens,
        "events": events,
        "estimated_tokens": 0,
        "correction": revision != 0,
        "revision": revision,
    }
    return wire_record(
        "UsageWindow", {"tenant": TENANT, "subject": TENANT, "producer": "ledgerflow-usage/p0"}, payload
    )


async def produce_raw(settings: Settings, records: list[bytes]) -> list[tuple[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        where = []
        for value in records:
            meta = await producer.send_and_wait(settings.topic(USAGE_WINDOWS), value, key=TENANT.encode())
            where.append((meta.partition, meta.offset))
        return where
    finally:
        await producer.stop()


def test_usage_records_that_overflow_a_counter_or_a_date_are_dead_lettered_and_all_else_flows(
    settings: Settings, log_dir: Path, edge: str, tokens: Callable[..., str], http: httpx.Client
) -> None:
    worker = start(settings, "worker", "worker", log_dir=log_dir)
    try:
        first, later = traffic(11, 2), traffic(12, 2)
        asyncio.run(publish(settings, iter(first), progress_every_s=0))
        hostile = [
            window(INT64_MAX, 1),
            window(1, INT64_MAX),
            window(INT64_MAX, 1),
            window(5, 1, start=FAR_MICROS, revision=0),
        ]
        where = asyncio.run(produce_raw(settings, hostile))
        asyncio.run(publish(settings, iter(later), progress_every_s=0))

        deadline = time.monotonic() + TIMEOUT_S
        why, applied = "", {}
        while time.monotonic() < deadline:
            assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
            done, why = asyncio.run(pipeline_settled(settings, turns_in(first) + turns_in(later)))
            applied = checkpoint(settings)
            past = [applied.get(f"{settings.topic(USAGE_WINDOWS)}:{p}", -1) >= o for p, o in where]
            if done and all(past):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"stuck behind {where}: {why}; {applied}\n{worker.log_tail()}")

        letters = [x.letter for x in asyncio.run(read_dead_letters(settings, USAGE_WINDOWS))]
        refused = {(d.partition, d.offset): d for d in letters if d is not None}
        for p, o in where:
            assert (p, o) in refused, (where, sorted(refused))
            assert refused[(p, o)].reason_code == "invalid-envelope", refused[(p, o)].reason
            assert refused[(p, o)].agent == "read-models"

        headers = {"Authorization": f"Bearer {tokens(TENANT, 'subscriber')}"}
        answer = http.get(f"{edge}/v1/usage", headers=headers)
        assert answer.status_code == 200, (answer.status_code, answer.text[:300])

        report: Report = audit_at_rest(settings)
        named = {(f.topic, f.partition, f.offset) for f in report.findings}
        for p, o in where:
            assert (settings.topic(USAGE_WINDOWS), p, o) in named, [str(f) for f in report.ordered()]
        assert not [f for f in report.findings if f.kind.startswith("projection.")], [
            str(f) for f in report.ordered()
        ]
        assert worker.popen.poll() is None, worker.log_tail()
    finally:
        worker.stop()
