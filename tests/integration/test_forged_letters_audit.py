"""A dead letter written into an input topic's DLQ from outside does not hide a missing answer from
the audit, on the real broker (no worker runs: nothing is answered).

The audit takes a turn (a training command) with a dead letter as accounted for: the agent refused
it. It used to take any letter naming the record's position, so one written there by anyone who can
write Kafka hid ``decision.missing`` (``training.missing``). A letter excuses a record only if it
holds that record (its ``value_sha256`` is the record's): letters the agents write always do.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaProducer

from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import encode_dead_letter
from ledgerflow.contracts.deadletters import shape_dead_letter
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import EnableTraining, MessageSubmitted
from ledgerflow.topics import CONVERSATION_EVENTS, TRAINING_COMMANDS, dlq_of

TENANT, CONV = "fl-acme", "fl-conv-1"


def records() -> list[tuple[str, bytes, Event]]:
    at = time.time_ns() // 1000 - 120_000_000  # older than any grace
    turns = [
        new_event(
            "MessageSubmitted",
            tenant=TENANT,
            subject=CONV,
            producer="gateway",
            occurred_at_micros=at + i,
            payload=MessageSubmitted(f"t-{i}", "user", f"turn {i}", "slm-1"),
        )
        for i in range(2)
    ]
    commands = [
        new_event(
            "EnableTraining",
            tenant=TENANT,
            subject=TENANT,
            producer="edge",
            occurred_at_micros=at + 10 + i,
            payload=EnableTraining(f"cmd-{i}", "ann", "because"),
        )
        for i in range(2)
    ]
    return [(CONVERSATION_EVENTS, CONV.encode(), e) for e in turns] + [
        (TRAINING_COMMANDS, TENANT.encode(), e) for e in commands
    ]


async def produce(settings: Settings) -> list[tuple[str, int, int, bytes, bytes]]:
    """The records, then one letter for each: the first of each topic holds the record (as an agent
    writes it), the second names its position but holds other bytes (written from outside)."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        written = []
        for base, key, event in records():
            value = codec.encode(event)
            meta = await producer.send_and_wait(
                settings.topic(base), value, key=key, timestamp_ms=time.time_ns() // 1_000_000 - 120_000
            )
            written.append((base, meta.partition, meta.offset, key, value))
        for n, (base, partition, offset, key, value) in enumerate(written):
            letter = shape_dead_letter(
                source_topic=settings.topic(base),
                partition=partition,
                offset=offset,
                key=key,
                value=value if n % 2 == 0 else b"forged",
                headers=(),
                reason="evaluation-failed: RuntimeError: boom",
                agent="policy" if base == CONVERSATION_EVENTS else "training",
                failed_at=time.time_ns() // 1000,
            )
            await producer.send_and_wait(dlq_of(settings.topic(base)), encode_dead_letter(letter), key=key)
        return written
    finally:
        await producer.stop()


def test_a_letter_that_does_not_hold_the_record_does_not_excuse_its_missing_answer(
    settings: Settings,
) -> None:
    written = asyncio.run(produce(settings))
    report = asyncio.run(run_audit(settings, projections=False, progress=False, grace_s=0))
    found = sorted((f.kind, f.topic, f.partition, f.offset) for f in report.ordered())
    forged = [written[1], written[3]]  # the second turn and the second command
    assert found == sorted(
        (
            "decision.missing" if base == CONVERSATION_EVENTS else "training.missing",
            settings.topic(base),
            partition,
            offset,
        )
        for base, partition, offset, _, _ in forged
    ), found
