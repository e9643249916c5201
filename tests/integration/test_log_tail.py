"""``kafka/tail.py`` on the real broker: each record is folded once whoever asks, concurrent callers
share one read, a caller given up on by its deadline leaves the read running, and transaction
markers at the log end do not keep a caller waiting."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.kafka.logs import RawRecord
from ledgerflow.kafka.tail import LogTail
from ledgerflow.topics import POLICY_RULES, TRAINING_AUDIT


async def _send(settings: Settings, topic: str, n: int, *, transactional: bool = False) -> None:
    extra = {"transactional_id": f"tail-test-{uuid.uuid4().hex[:8]}"} if transactional else {}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", **extra)
    await producer.start()
    try:
        if transactional:
            async with producer.transaction():
                for i in range(n):
                    await producer.send(topic, f"r{i}".encode(), key=f"k{i % 5}".encode())
        else:
            for i in range(n):
                await producer.send_and_wait(topic, f"r{i}".encode(), key=f"k{i % 5}".encode())
    finally:
        await producer.stop()


def test_each_record_is_folded_once_and_a_cancelled_caller_leaves_the_read_running(
    settings: Settings,
) -> None:
    topic = settings.topic(POLICY_RULES)
    folded: list[tuple[int, int]] = []

    def fold(records: Sequence[RawRecord]) -> None:
        folded.extend((r.partition, r.offset) for r in records)

    async def scenario() -> None:
        tail = LogTail(settings, topic, fold, batch=7)
        try:
            await _send(settings, topic, 60)
            await asyncio.gather(*(tail.catch_up() for _ in range(4)))
            assert len(folded) == len(set(folded)) == 60 == tail.records_read
            await _send(settings, topic, 25)
            waiting = asyncio.create_task(tail.catch_up())
            await asyncio.sleep(0)
            waiting.cancel()  # the caller gives up; the read it started goes on
            await asyncio.gather(waiting, return_exceptions=True)
            await tail.catch_up()
            assert len(folded) == len(set(folded)) == 85
            await tail.catch_up()
            assert len(folded) == 85
        finally:
            await tail.close()

    asyncio.run(scenario())


def test_transaction_markers_at_the_end_do_not_hold_a_caller(settings: Settings) -> None:
    topic = settings.topic(TRAINING_AUDIT)
    folded: list[bytes] = []

    async def scenario() -> None:
        tail = LogTail(settings, topic, lambda records: folded.extend(r.value or b"" for r in records))
        try:
            await _send(settings, topic, 12, transactional=True)
            await asyncio.wait_for(tail.catch_up(), 30)
            assert sorted(folded) == sorted(f"r{i}".encode() for i in range(12))
            await _send(settings, topic, 3, transactional=True)
            await asyncio.wait_for(tail.catch_up(), 30)
            assert len(folded) == 15 and tail.partitions() > 1
        finally:
            await tail.close()

    asyncio.run(scenario())


def test_a_topic_recreated_under_a_running_tail_is_read_afresh_not_left_stuck(settings: Settings) -> None:
    """Deleted and created again while an edge ran, ``policy.rules`` held a shorter new log: the tail
    kept positions past its end and listed the old records for ever (or waited for the old end)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = settings.topic(POLICY_RULES)
    folded: list[bytes] = []
    resets: list[int] = []

    def fold(batch: Sequence[RawRecord]) -> None:
        folded.extend(r.value or b"" for r in batch)

    def reset() -> None:
        resets.append(len(folded))
        folded.clear()

    async def recreate() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
            for _ in range(100):  # the deletion completes in the background
                if topic not in await admin.list_topics():
                    break
                await asyncio.sleep(0.1)
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()

    async def scenario() -> None:
        tail = LogTail(settings, topic, fold, reset=reset)
        try:
            await _send(settings, topic, 6)
            await tail.catch_up()
            assert len(folded) == 6
            await recreate()
            await asyncio.sleep(1.0)
            await _send(settings, topic, 2)  # the new log: two records, below the six read
            for _ in range(30):  # the tail's consumer meets the new topic once its metadata says so
                try:
                    await asyncio.wait_for(tail.catch_up(), 20)
                    break
                except Exception:
                    await asyncio.sleep(0.5)
            assert resets == [6], "the old log's records were not forgotten"
            assert folded == [b"r0", b"r1"], f"the new log was not read from its start: {folded}"
        finally:
            await tail.close()

    asyncio.run(scenario())


def test_a_deleted_topic_is_dropped_without_a_log_flood_and_read_again_when_back(settings: Settings) -> None:
    """Its partitions left assigned (paused between reads), a deleted topic made aiokafka ask for
    metadata in a loop without backoff, logging ``Topic … not found`` thousands of times a second.
    Now the tail drops it at once, reads fail with a 503 naming it, and it is read when back."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    from ledgerflow.errors import TopicsMissing
    from tests.integration.test_edge_topics_vanish import counted

    topic = settings.topic(POLICY_RULES)
    folded: list[bytes] = []

    def fold(batch: Sequence[RawRecord]) -> None:
        folded.extend(r.value or b"" for r in batch)

    async def delete() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
            for _ in range(100):
                if topic not in await admin.list_topics():
                    return
                await asyncio.sleep(0.1)
        finally:
            await admin.close()

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()

    async def scenario() -> BaseException | None:
        tail = LogTail(settings, topic, fold, reset=folded.clear)
        try:
            await _send(settings, topic, 3)
            await tail.catch_up()
            with counted() as seen:
                await delete()
                await asyncio.sleep(3.0)
            flood = [r.getMessage() for r in seen.records]
            assert len(flood) <= 30, f"{len(flood)} log records in 3 s with the topic gone: {flood[:5]}"
            refused: BaseException | None = None
            try:
                await tail.catch_up()
            except TopicsMissing as exc:
                refused = exc
            await create()
            await _send(settings, topic, 2)
            for _ in range(30):
                try:
                    await asyncio.wait_for(tail.catch_up(), 20)
                    break
                except Exception:
                    await asyncio.sleep(0.5)
            return refused
        finally:
            await tail.close()

    refused = asyncio.run(scenario())
    assert refused is not None and topic in str(refused), refused
    assert folded == [b"r0", b"r1"], folded


def test_a_topic_back_after_vanishing_is_read_from_its_start_however_long_it_is(settings: Settings) -> None:
    """The tail saw the topic vanish, so the topic it finds again is a new log: what was folded from
    the old one is reset and the new one read from offset 0. Only a new log shorter than what was read
    was told apart; one as long or longer was read on from the old position, its first records never
    folded and the old log's records kept."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic = settings.topic(POLICY_RULES)
    folded: list[bytes] = []

    def fold(batch: Sequence[RawRecord]) -> None:
        folded.extend(r.value or b"" for r in batch)

    async def send(prefix: str, n: int) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for i in range(n):
                await producer.send_and_wait(topic, f"{prefix}{i}".encode(), key=b"k")
        finally:
            await producer.stop()

    async def recreate() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([topic])
            for _ in range(100):
                if topic not in await admin.list_topics():
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(2.0)  # the tail's consumer sees the topic gone
            await admin.create_topics([NewTopic(topic, 1, 1)])
        finally:
            await admin.close()

    async def scenario() -> None:
        tail = LogTail(settings, topic, fold, reset=folded.clear)
        try:
            await send("old", 2)
            await tail.catch_up()
            assert folded == [b"old0", b"old1"]
            await recreate()
            await send("new", 4)
            for _ in range(30):
                try:
                    await asyncio.wait_for(tail.catch_up(), 20)
                    break
                except Exception:
                    await asyncio.sleep(0.5)
        finally:
            await tail.close()

    asyncio.run(scenario())
    assert folded == [b"new0", b"new1", b"new2", b"new3"], folded
