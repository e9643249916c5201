"""Reading dead letters back from ``<prefix><topic>.dlq``: the scan the ``dlq`` tool and the audit use.

Agents write every record they cannot decode or validate to ``<prefix><topic>.dlq`` as a
``DeadLetter`` (see docs/dead-letters.md). This module reads those topics with a plain
aiokafka consumer — no consumer group, so reading never moves anyone's offsets:

1. describe the cluster's topics once; a DLQ topic that does not exist is reported, not
   created;
2. assign every partition of the wanted DLQ topics and take their beginning and end
   offsets *now* — records that arrive later are not read;
3. seek each partition to the start of its window and fetch until the window is read;
4. decode each value with ``decode_dead_letter``; a DLQ record that itself does not
   decode is kept, with the problem, rather than dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ledgerflow.config import Settings
from ledgerflow.contracts.codec import decode_dead_letter
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.errors import DecodeError, InfrastructureError, ValidationError
from ledgerflow.topics import DLQ_SUFFIX, DLQ_TOPICS

__all__ = [
    "DlqScan",
    "LocatedDeadLetter",
    "Window",
    "dlq_topic_names",
    "latest_window",
    "missing_message",
    "newest",
    "no_letter_message",
    "offset_window",
    "read_dead_letter_at",
    "read_dead_letters",
    "scan_dead_letters",
]

READ_TIMEOUT_S = 30.0

Window = Callable[[int, int], tuple[int, int]]
"""(beginning offset, end offset) of a partition -> [start, stop) offsets to read."""


@dataclass(frozen=True, slots=True)
class LocatedDeadLetter:
    """A dead letter and where it sits in its DLQ topic.

    ``letter`` is None only when the DLQ record itself does not decode; ``problem`` then
    says why and ``raw`` holds its bytes.
    """

    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    letter: DeadLetter | None
    raw: bytes = b""
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class DlqScan:
    """What a read found: the letters, and the DLQ topics that do not exist."""

    letters: tuple[LocatedDeadLetter, ...]
    read: tuple[str, ...]
    missing: tuple[str, ...]


def dlq_topic_names(settings: Settings, topic: str | None = None) -> list[str]:
    """Full DLQ topic names: of ``topic`` (a base name like ``conversation.events``), or all."""
    if topic is None:
        return [settings.topic(spec.base) for spec in DLQ_TOPICS]
    base = topic.removesuffix(DLQ_SUFFIX)
    if not base:
        raise ValidationError("--topic: give a topic base name such as conversation.events")
    return [settings.topic(base + DLQ_SUFFIX)]


def latest_window(limit: int | None) -> Window:
    """Everything, or the newest ``limit`` records of each partition."""
    if limit is not None and limit < 1:
        raise ValidationError(f"--limit: {limit} must be 1 or more")
    return lambda begin, end: (begin if limit is None else max(begin, end - limit), end)


def offset_window(offset: int) -> Window:
    """Exactly the record at ``offset`` (nothing when it is outside the partition)."""
    return lambda begin, end: (offset, offset + 1) if begin <= offset < end else (end, end)


async def scan_dead_letters(
    settings: Settings, topic: str | None = None, limit: int | None = None
) -> DlqScan:
    """The dead letters now in the DLQ of ``topic`` (all DLQ topics when None).

    With ``limit``, the newest ``limit`` letters overall (by ``failed_at``), in DLQ order.
    """
    scan = await _scan(settings, dlq_topic_names(settings, topic), latest_window(limit))
    if limit is not None:
        scan = DlqScan(newest(scan.letters, limit), scan.read, scan.missing)
    return scan


async def read_dead_letters(
    settings: Settings, topic: str | None = None, limit: int | None = None
) -> list[LocatedDeadLetter]:
    """The dead letters now in the DLQ of ``topic`` (base name; None = every DLQ topic)."""
    return list((await scan_dead_letters(settings, topic, limit)).letters)


async def read_dead_letter_at(
    settings: Settings, topic: str, offset: int, partition: int = 0
) -> LocatedDeadLetter | None:
    """The dead letter at ``offset`` of the DLQ of ``topic``, or None if there is none."""
    scan = await _scan(settings, dlq_topic_names(settings, topic), offset_window(offset))
    if scan.missing:
        raise ValidationError(missing_message(scan.missing[0]))
    found = [x for x in scan.letters if x.dlq_partition == partition and x.dlq_offset == offset]
    return found[0] if found else None


async def _scan(settings: Settings, names: Sequence[str], window: Window) -> DlqScan:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    consumer: AIOKafkaConsumer | None = None
    started: list[Any] = []
    try:
        # Step 1. Which DLQ topics exist, and their partitions.
        started.append(admin)
        await admin.start()
        described = {t["topic"]: t for t in await admin.describe_topics(None) if not t["error_code"]}
        read = tuple(n for n in names if n in described)
        missing = tuple(n for n in names if n not in described)
        tps = [TopicPartition(n, p["partition"]) for n in read for p in described[n]["partitions"]]
        if not tps:
            return DlqScan((), read, missing)
        # Step 2. The window of each partition, fixed now.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="ledgerflow-dlq",
            request_timeout_ms=15000,
        )
        started.append(consumer)
        await consumer.start()
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        bounds = {tp: window(begins[tp], ends[tp]) for tp in tps}
        bounds = {tp: (start, stop) for tp, (start, stop) in bounds.items() if start < stop}
        # Steps 3 and 4.
        records = await _fetch(consumer, bounds) if bounds else []
        letters = sorted((_locate(r) for r in records), key=_position)
        return DlqScan(tuple(letters), read, missing)
    except KafkaError as exc:
        raise InfrastructureError(
            f"could not read dead letters from Kafka at {settings.kafka_bootstrap}: {exc!r}. "
            "Operator action: check that the broker runs (`ledgerflow stack status`) or set "
            "LEDGERFLOW_KAFKA_BOOTSTRAP / --kafka"
        ) from None
    finally:
        for client in reversed(started):
            await (client.stop() if isinstance(client, AIOKafkaConsumer) else client.close())


async def _fetch(consumer: AIOKafkaConsumer, bounds: dict[TopicPartition, tuple[int, int]]) -> list[Any]:
    consumer.assign(list(bounds))
    for tp, (start, _) in bounds.items():
        consumer.seek(tp, start)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READ_TIMEOUT_S
    pending = dict(bounds)
    out: list[Any] = []
    while pending:
        if loop.time() > deadline:
            left = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in pending)
            raise InfrastructureError(
                f"reading dead letters timed out after {READ_TIMEOUT_S:.0f} s; unread: {left}. "
                "Operator action: check the broker's health and retry"
            )
        batch = await consumer.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            start, stop = bounds[tp]
            out += [r for r in records if start <= r.offset < stop]
        for tp in list(pending):
            if await consumer.position(tp) >= pending[tp][1]:
                del pending[tp]
                consumer.pause(tp)
    return out


def _locate(record: Any) -> LocatedDeadLetter:
    raw = bytes(record.value or b"")
    try:
        letter: DeadLetter | None = decode_dead_letter(raw)
        problem = None
    except DecodeError as exc:
        letter, problem = None, exc.reason
    return LocatedDeadLetter(record.topic, record.partition, record.offset, letter, raw, problem)


def _position(x: LocatedDeadLetter) -> tuple[str, int, int]:
    return (x.dlq_topic, x.dlq_partition, x.dlq_offset)


def missing_message(names: str) -> str:
    return (
        f"DLQ topic(s) {names} do not exist (yet). Check the topic name and LEDGERFLOW_TOPIC_PREFIX; "
        "`ledgerflow worker` and `ledgerflow stack up` create the DLQ topics"
    )


def no_letter_message(dlq_topic: str, topic: str, offset: int) -> str:
    """What ``dlq show`` and ``dlq replay --offset`` say when no dead letter sits at ``offset``."""
    return (
        f"no dead letter at offset {offset} of {dlq_topic}; "
        f"`ledgerflow dlq list --topic {topic}` shows the offsets there are"
    )


def newest(letters: Iterable[LocatedDeadLetter], limit: int) -> tuple[LocatedDeadLetter, ...]:
    """The ``limit`` most recently failed letters (by ``failed_at``), in DLQ position order."""
    chosen = sorted(letters, key=lambda x: (x.letter.failed_at if x.letter else -1, *_position(x)))
    chosen = chosen[-limit:] if limit > 0 else []
    return tuple(sorted(chosen, key=_position))
