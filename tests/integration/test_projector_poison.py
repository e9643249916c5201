"""Poison records on the projector's own inputs never stop it, on the real broker, Redis and worker.

A producer writing Kafka directly puts a 1,000,118-byte record (well-formed: it would decode)
on ``policy.decisions``, ``training.audit`` and ``usage.windows``. The projector dead-letters
each by reference without decoding it (``record-too-large``, SHA-256 and size, a prefix),
stays alive, and projects the records written after them in the same partitions.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import encode_dead_letter
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import PolicyDecision, TrainingRejected, UsageWindow
from ledgerflow.contracts.registry import default_registry
from ledgerflow.dlq import read_dead_letters
from ledgerflow.projections.generations import PROJECTION
from ledgerflow.redisclient import sync_client
from ledgerflow.redisvalues import int_map
from ledgerflow.topics import POLICY_DECISIONS, TRAINING_AUDIT, USAGE_WINDOWS
from ledgerflow.traffic import interleaved, publish
from tests.support.processes import live_keys, pipeline_settled, start

TIMEOUT_S = 120.0
TENANT = "acme"
POISON_BYTES = 1_000_118  # the size of issue 11's case 1


def _event(type_: str, subject: str, payload: object) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        type=type_,
        schema_version=default_registry().latest(type_).version,
        tenant=TENANT,
        subject=subject,
        occurred_at=time.time_ns() // 1000,
        producer="forger",
        payload=payload,  # type: ignore[arg-type]
    )


def _decision(conv: str, pad: str) -> Event:
    payload = PolicyDecision(
        input_event_id=str(uuid.uuid4()),
        input_hash=None,
        conversation_id=conv,
        outcome="allow",
        score=0.0,
        matched_rules=(),
        rule_pack_version=0,
        constitution_hash=pad,
        training_version=0,
        training_enabled=False,
    )
    return _event("PolicyDecision", conv, payload)


def _training(pad: str) -> Event:
    payload = TrainingRejected(command_id=None, version=1, actor="forger", reason=pad)
    return _event("TrainingRejected", TENANT, payload)


def _usage(pad: str) -> Event:
    start = time.time_ns() // 1000 // 1_000_000 * 1_000_000  # a window the usage agent could write
    payload = UsageWindow(
        model=pad,
        window_start=start,
        window_end=start + 1_000_000,
        tokens=1,
        events=1,
        estimated_tokens=0,
        correction=False,
        revision=0,
    )
    return _event("UsageWindow", TENANT, payload)


def sized(make: Callable[[str], Event], size: int) -> bytes:
    """The encoding of ``make(pad)`` that is exactly ``size`` bytes (a well-formed record)."""
    filler = size - len(codec.encode(make("")))
    for pad in range(filler - 8, filler + 1):
        value = codec.encode(make("x" * pad))
        if len(value) == size:
            return value
    raise AssertionError(f"cannot size a record to {size} bytes")


async def produce_raw(settings: Settings, records: list[tuple[str, bytes, bytes]]) -> list[tuple[int, int]]:
    """Write (base topic, key, value) straight to Kafka; (partition, offset) of each."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=2 * 1024 * 1024
    )
    await producer.start()
    try:
        where = []
        for base, key, value in records:
            meta = await producer.send_and_wait(settings.topic(base), value, key=key)
            where.append((meta.partition, meta.offset))
        return where
    finally:
        await producer.stop()


def checkpoint(settings: Settings) -> dict[str, int]:
    client = sync_client(settings.redis_url, socket_timeout=10)
    try:
        return int_map(client.hgetall(live_keys(client, settings).checkpoint(PROJECTION)))
    finally:
        client.close()


def traffic(seed: int, conversations: int) -> list[Event]:
    """Turns of ``conversations`` conversations of ``TENANT``, as a gateway would see them."""
    return list(
        interleaved(random.Random(seed), [TENANT], conversations, time.time_ns() // 1000, run_id=f"pp{seed}")
    )


def turns_in(events: list[Event]) -> int:
    return sum(e.type == "MessageSubmitted" for e in events)


def test_oversized_records_on_the_projectors_inputs_are_dead_lettered_and_later_records_projected(
    settings: Settings, log_dir: Path
) -> None:
    env = {"LEDGERFLOW_USAGE_WINDOW_S": "1", "LEDGERFLOW_USAGE_LATENESS_S": "0.5"}
    worker = start(settings, "worker", "worker", log_dir=log_dir, extra_env=env)
    try:
        first, later = traffic(1, 3), traffic(2, 3)
        asyncio.run(publish(settings, iter(first), progress_every_s=0))
        # Each poison record goes to the partition later records will use: the decisions of
        # ``conv`` (keyed by it), the usage windows and training outcomes of TENANT.
        conv = next(e.subject for e in later if e.type == "MessageSubmitted")
        poison = [
            (POLICY_DECISIONS, conv.encode(), sized(lambda pad: _decision(conv, pad), POISON_BYTES)),
            (TRAINING_AUDIT, TENANT.encode(), sized(_training, POISON_BYTES)),
            (USAGE_WINDOWS, TENANT.encode(), sized(_usage, POISON_BYTES)),
        ]
        assert all(len(value) == POISON_BYTES for _, _, value in poison)
        where = asyncio.run(produce_raw(settings, poison))
        asyncio.run(publish(settings, iter(later), progress_every_s=0))
        # A later training.audit record of TENANT (well-formed, small) after its poison.
        asyncio.run(produce_raw(settings, [(TRAINING_AUDIT, TENANT.encode(), codec.encode(_training("no")))]))

        deadline = time.monotonic() + TIMEOUT_S
        why, applied = "", {}
        while time.monotonic() < deadline:
            assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
            done, why = asyncio.run(pipeline_settled(settings, turns_in(first) + turns_in(later)))
            applied = checkpoint(settings)
            past = [
                applied.get(f"{settings.topic(base)}:{p}", -1) > o
                for (base, _, _), (p, o) in zip(poison, where)
            ]
            if done and all(past):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(
                f"not projected past the poison at {where}: {why}; {applied}\n{worker.log_tail()}"
            )

        for (base, _, value), (partition, offset) in zip(poison, where, strict=True):
            letters = [x.letter for x in asyncio.run(read_dead_letters(settings, base))]
            [letter] = [
                d for d in letters if d is not None and (d.partition, d.offset) == (partition, offset)
            ]
            assert letter.reason_code == "record-too-large" and letter.value_truncated, letter.reason
            assert (letter.value_size, letter.value_sha256) == (
                POISON_BYTES,
                hashlib.sha256(value).hexdigest(),
            )
            assert letter.value == value[: len(letter.value)] and len(encode_dead_letter(letter)) < 8192
            assert letter.agent == "read-models"
        assert worker.popen.poll() is None, worker.log_tail()
    finally:
        worker.stop()
