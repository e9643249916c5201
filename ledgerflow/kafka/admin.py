"""Kafka housekeeping: create our topics idempotently, prove a produce/consume round trip, and
ask the cluster for partition counts and a group's committed offsets.

Those questions are asked ``patiently``: while Kafka answers with a retriable error (a fresh
three-broker cluster has no group coordinator until its offsets topic exists; a broker is
restarting) the question is asked again, for up to ``ADMIN_WAIT_S``; any other error at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError, TopicsMissing
from ledgerflow.retry import delays
from ledgerflow.topics import TopicSpec, all_topics, replication, with_partitions

log = logging.getLogger(__name__)
T = TypeVar("T")

HEALTH_TOPIC = "__ledgerflow.health"
ADMIN_WAIT_S = 60.0  # a fresh cluster creates __consumer_offsets on the first group lookup
FIRST_WAIT_S, MAX_WAIT_S = 0.25, 5.0


async def ensure_topics(
    settings: Settings, specs: tuple[TopicSpec, ...] | None = None, partitions: int | None = None
) -> list[str]:
    """Create every missing topic with its partition count (every multi-partition topic at
    ``partitions`` if given) and configs, replicated as the cluster's broker count allows
    (``topics.replication``); return those created. Existing topics are left as they are."""
    specs = with_partitions(all_topics() if specs is None else specs, partitions)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    try:
        await admin.start()
    except KafkaError as exc:
        raise InfrastructureError(
            f"no Kafka broker answers at {settings.kafka_bootstrap} ({type(exc).__name__}): start the "
            "local stack (`ledgerflow stack up`) or fix LEDGERFLOW_KAFKA_BOOTSTRAP / --kafka"
        ) from None
    try:
        existing = set(await admin.list_topics())
        factor, min_isr = replication(len((await admin.describe_cluster())["brokers"]))
        wanted = [
            NewTopic(
                settings.topic(s.base),
                s.partitions,
                factor,
                topic_configs={**s.configs, "min.insync.replicas": str(min_isr)},
            )
            for s in specs
            if settings.topic(s.base) not in existing
        ]
        if not wanted:
            return []
        with contextlib.suppress(TopicAlreadyExistsError):
            response = await admin.create_topics(wanted)
            refused = creation_errors(getattr(response, "topic_errors", []))
            if refused:
                raise InfrastructureError(
                    f"Kafka at {settings.kafka_bootstrap} refused to create {'; '.join(refused)}"
                )
        await _wait_for_metadata(admin, [t.name for t in wanted])
        return [t.name for t in wanted]
    finally:
        await admin.close()


def creation_errors(topic_errors: list[tuple[Any, ...]]) -> list[str]:
    """ "topic (error message)" for each topic a CreateTopics response refused; one created
    meanwhile by someone else (TOPIC_ALREADY_EXISTS) is no error."""
    refused = []
    for name, code, *message in topic_errors:
        if code not in (0, TopicAlreadyExistsError.errno):
            refused.append(f"{name} ({(message[0] if message else None) or f'error code {code}'})")
    return refused


async def _wait_for_metadata(admin: AIOKafkaAdminClient, names: list[str]) -> None:
    for _ in range(100):
        if set(names) <= set(await admin.list_topics()):
            return
        await asyncio.sleep(0.1)


async def round_trip(settings: Settings, timeout: float = 30.0) -> float:
    """Produce one record and consume it back; return the seconds it took."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    await ensure_topics(settings, (TopicSpec(HEALTH_TOPIC, 1, {"retention.ms": "3600000"}),))
    topic = settings.topic(HEALTH_TOPIC)
    marker = uuid.uuid4().bytes
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    try:
        await producer.start()
        await consumer.start()
        meta = await producer.send_and_wait(topic, marker)
        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        while loop.time() - began < timeout:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            if any(r.value == marker for r in batch.get(tp, [])):
                return loop.time() - began
        raise InfrastructureError(
            f"Kafka at {settings.kafka_bootstrap} accepted a record but did not "
            f"deliver it back within {timeout:.0f} s"
        )
    except KafkaError as exc:
        raise InfrastructureError(
            f"Kafka at {settings.kafka_bootstrap} failed a produce/consume round trip: {exc!r}"
        ) from None
    finally:
        await producer.stop()
        await consumer.stop()


class SharedAdmin:
    """One admin client for a long-lived process's requests (the edge's ``/v1/overview``):
    started on first use, so the process starts without asking the broker anything; dropped
    after a failed or abandoned call, so the next one reconnects; closed by its owner.
    """

    def __init__(self, bootstrap: str, request_timeout_ms: int) -> None:
        self._bootstrap = bootstrap
        self._request_timeout_ms = request_timeout_ms
        self._client: AIOKafkaAdminClient | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[AIOKafkaAdminClient]:
        """The started client for one call; a call that raises (or is cancelled) drops it."""
        async with self._lock:
            if self._client is None:
                client = AIOKafkaAdminClient(
                    bootstrap_servers=self._bootstrap, request_timeout_ms=self._request_timeout_ms
                )
                try:
                    await client.start()
                except BaseException:
                    await _close_quietly(client)
                    raise
                self._client = client
            current = self._client
        try:
            yield current
        except BaseException:
            if self._client is current:
                self._client = None
            await _close_quietly(current)
            raise

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await _close_quietly(client)


async def _close_quietly(client: AIOKafkaAdminClient) -> None:
    """Close without waiting on a broker that may be the reason for closing."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), 2.0)


@contextlib.asynccontextmanager
async def _admin(settings: Settings) -> AsyncIterator[AIOKafkaAdminClient]:
    """A started admin client, closed on exit."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        yield admin
    finally:
        await admin.close()


async def patiently(
    ask: Callable[[], Awaitable[T]],
    what: str,
    *,
    wait_s: float = ADMIN_WAIT_S,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``ask()``, asked again while Kafka answers with a retriable error (no group coordinator yet:
    a fresh cluster still creating its offsets topic; a broker restarting) for up to ``wait_s``,
    waiting 0.25 s doubling to 5 s in between. Any other error is raised at once."""
    deadline, waits = clock() + wait_s, delays(FIRST_WAIT_S, MAX_WAIT_S)
    while True:
        try:
            return await ask()
        except KafkaError as exc:
            delay = next(waits)
            if not exc.retriable or clock() + delay > deadline:
                raise
            log.info("%s not readable yet (%r); asking again in %.2f s", what, exc, delay)
        await sleep(delay)


async def _asked(settings: Settings, question: Callable[[AIOKafkaAdminClient], Awaitable[T]], what: str) -> T:
    """``question`` put to one admin client, ``patiently``. A cluster that does not answer at all
    (the client cannot start) is raised at once: a stack that is down or a wrong address, which the
    verbs report in one line instead of waiting for it."""
    async with _admin(settings) as admin:
        return await patiently(lambda: question(admin), what)


async def partition_counts(settings: Settings, topics: list[str]) -> dict[str, int]:
    """Partition count of each topic; TopicsMissing (an InfrastructureError) naming a missing one."""
    described = await _asked(
        settings, lambda admin: admin.describe_topics(topics), f"the partition counts of {', '.join(topics)}"
    )
    counts = {}
    for item in described:
        name = item.get("topic")
        if item.get("error_code") or not item.get("partitions"):
            raise TopicsMissing(
                f"topic {name} does not exist: run `ledgerflow stack up` (or `ledgerflow worker`) "
                "to create topics"
            )
        counts[name] = len(item["partitions"])
    return counts


async def committed_offsets(settings: Settings, group: str, topic: str) -> dict[int, int]:
    """The consumer group's committed offset per partition of ``topic`` (absent = none)."""
    offsets = await group_offsets(settings, group)
    return {tp.partition: offset for tp, offset in offsets.items() if tp.topic == topic}


async def _committed(settings: Settings, group: str) -> dict[TopicPartition, OffsetAndMetadata]:
    """What the consumer group committed, per partition (offset -1: nothing)."""
    return await _asked(
        settings, lambda admin: admin.list_consumer_group_offsets(group), f"the committed offsets of {group}"
    )


async def group_offsets(settings: Settings, group: str) -> dict[TopicPartition, int]:
    """The consumer group's committed offset of every partition it committed."""
    offsets = await _committed(settings, group)
    return {tp: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def group_metadata(settings: Settings, group: str) -> dict[TopicPartition, str]:
    """The metadata string each partition's committed offset carries (absent: no commit, or none)."""
    offsets = await _committed(settings, group)
    return {tp: meta.metadata for tp, meta in offsets.items() if meta.offset >= 0 and meta.metadata}


async def commit_metadata(
    settings: Settings, group: str, metadata: str, partitions: list[TopicPartition]
) -> None:
    """Commit offset 0 with ``metadata`` for ``partitions`` in ``group``, a group no consumer joins
    (``group_metadata`` reads the string back), ``patiently``."""
    await commit_offsets(settings, group, {tp: (0, metadata) for tp in partitions})


async def commit_offsets(
    settings: Settings, group: str, offsets: dict[TopicPartition, tuple[int, str]]
) -> None:
    """Commit (offset, metadata) per partition in ``group``, a group no consumer joins, ``patiently``."""

    async def commit() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap, group_id=group, enable_auto_commit=False
        )
        await consumer.start()
        try:
            consumer.assign(list(offsets))  # a manual assignment: commits without joining the group
            await consumer.commit(offsets)
        finally:
            await consumer.stop()

    await patiently(commit, f"the commit of {group}")


async def committed_with_metadata(settings: Settings, group: str) -> dict[TopicPartition, tuple[int, str]]:
    """(offset, metadata) of every partition ``group`` committed."""
    offsets = await _committed(settings, group)
    return {tp: (meta.offset, meta.metadata or "") for tp, meta in offsets.items() if meta.offset >= 0}
