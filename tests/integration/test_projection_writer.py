"""``ProjectionWriter`` on the real Redis: fenced at-most-once application, redeliveries, script
cache loss, one round trip per batch, the checkpoint hash.

Each test writes under its own key namespace (``lf:test-<uuid>:``) and deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio.connection import Connection, ConnectionPool

from ledgerflow.config import Settings
from ledgerflow.contracts.events import Event, derived_event_id, new_event
from ledgerflow.contracts.payloads import (
    ConversationClosed,
    ConversationStarted,
    MessageSubmitted,
    PolicyDecision,
)
from ledgerflow.projections.conversations import RECENT_DENIALS, project
from ledgerflow.projections.guards import guard_for, set_guard
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.ops import FencedOps, Position
from ledgerflow.projections.writer import ProjectionWriter, WriteResult
from ledgerflow.redisclient import async_client, is_cluster_client

T0 = 1_700_000_000_000_000
EVENTS, DECISIONS = "conversation.events", "policy.decisions"
R = TypeVar("R")
Record = tuple[Event, Position]


class CountingConnection(Connection):
    """A redis-py connection that counts what it sends: an independent measure of round trips."""

    sends = 0

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).sends += 1
        await super().send_packed_command(command, check_health)


def _event(i: int, payload: object, tenant: str, subject: str) -> Event:
    return new_event(
        type(payload).__name__,
        tenant=tenant,
        subject=subject,
        payload=payload,  # type: ignore[arg-type]
        producer="test",
        occurred_at_micros=T0 + i,
        event_id=derived_event_id("writer-test", str(i)),
    )


def _decision(i: int, conv: str, input_i: int, outcome: str) -> Event:
    payload = PolicyDecision(
        input_event_id=derived_event_id("writer-test", str(input_i)),
        input_hash=None,
        conversation_id=conv,
        outcome=outcome,
        score=0.5,
        matched_rules=(),
        rule_pack_version=1,
        constitution_hash="00" * 32,  # type: ignore[arg-type]
        training_version=0,
        training_enabled=False,
    )
    return _event(i, payload, "acme", conv)


def records() -> list[Record]:
    """Two tenants, three conversations, two partitions of events and two of decisions, in a
    delivery order that keeps each partition's offsets rising. As in production, each
    conversation's events share a partition and so do its decisions; one tenant's denials
    come from two partitions."""
    offsets: dict[tuple[str, int], int] = {}

    def at(topic: str, partition: int) -> Position:
        offset = offsets.get((topic, partition), -1) + 1
        offsets[(topic, partition)] = offset
        return Position(topic, partition, 100 + offset)

    started = ConversationStarted(actor="ana", model="slm-1")
    plan: list[tuple[Event, Position]] = [
        (_event(1, started, "acme", "c1"), at(EVENTS, 0)),
        (_event(2, started, "acme", "c2"), at(EVENTS, 1)),
        (_event(3, MessageSubmitted("t1u", "user", "hello", "slm-1"), "acme", "c1"), at(EVENTS, 0)),
        (_decision(4, "c1", 3, "allow"), at(DECISIONS, 1)),
        (_event(5, MessageSubmitted("t1a", "assistant", "hi!", "slm-1", 40), "acme", "c1"), at(EVENTS, 0)),
        (_event(6, MessageSubmitted("t1u", "user", "my key AKIA…", "slm-1"), "acme", "c2"), at(EVENTS, 1)),
        (_decision(7, "c2", 6, "deny"), at(DECISIONS, 0)),
        (_event(8, started, "globex", "c3"), at(EVENTS, 0)),
        (_event(9, MessageSubmitted("t1u", "user", "card 4111…", "slm-1"), "globex", "c3"), at(EVENTS, 0)),
        (_event(10, MessageSubmitted("t1a", "assistant", "ok", "slm-1", 12), "acme", "c2"), at(EVENTS, 1)),
        (_decision(11, "c1", 5, "deny"), at(DECISIONS, 1)),
        (_event(12, ConversationClosed("user-ended"), "acme", "c1"), at(EVENTS, 0)),
        (_event(13, ConversationClosed("timeout"), "acme", "c2"), at(EVENTS, 1)),
    ]
    return plan


def partition_by_partition(recs: Sequence[Record]) -> list[Record]:
    """The same records as a rebuild reads them: one partition after another (here in reverse)."""
    return sorted(recs, key=lambda r: (r[1].topic, r[1].partition), reverse=True)


def groups_of(recs: Sequence[Record], keys: Keys) -> list[FencedOps]:
    return [g for event, position in recs for g in project(event, position, keys)]


def new_keys() -> Keys:
    return Keys(namespace=f"lf:test-{uuid.uuid4().hex}:")


async def dump(redis: aioredis.Redis, keys: Keys) -> dict[str, object]:
    """Every key of the namespace (namespace stripped) with its full value."""
    state: dict[str, object] = {}
    async for raw in redis.scan_iter(match=f"{keys.namespace}*", count=1000):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            value: object = await redis.hgetall(key)
        elif kind == "list":
            value = await redis.lrange(key, 0, -1)
        elif kind == "zset":
            value = await redis.zrange(key, 0, -1, withscores=True)
        else:
            value = await redis.dump(key)
        state[key.removeprefix(keys.namespace)] = (kind, value)
    return state


async def drop(redis: aioredis.Redis, *spaces: Keys) -> None:
    for keys in spaces:
        found = [k async for k in redis.scan_iter(match=f"{keys.namespace}*", count=1000)]
        if found:
            await redis.delete(*found)


def with_redis(stack: Settings, scenario: Callable[[aioredis.Redis], Awaitable[R]], *spaces: Keys) -> R:
    async def run() -> R:
        redis = async_client(stack.redis_url, socket_timeout=10, socket_connect_timeout=5)
        try:
            return await scenario(redis)
        finally:
            await drop(redis, *spaces)
            await redis.aclose()

    return asyncio.run(run())


def test_batch_is_applied_once_with_every_group(stack: Settings) -> None:
    keys = new_keys()
    batch = groups_of(records(), keys)

    async def scenario(redis: aioredis.Redis) -> None:
        result = await ProjectionWriter(redis).apply(batch)
        assert (result.applied, result.skipped) == (len(batch), 0)
        conv = await redis.hgetall(keys.conversation("acme", "c1"))
        assert conv[b"status"] == b"closed" and conv[b"turns"] == b"2" and conv[b"tokens"] == b"40"
        assert await redis.llen(keys.conversation_turns("acme", "c1")) == 2
        assert set(await redis.hkeys(keys.conversation_decisions("acme", "c1"))) == {
            derived_event_id("writer-test", "3").encode(),
            derived_event_id("writer-test", "5").encode(),
        }
        tenant = await redis.hgetall(keys.tenant("acme"))
        assert tenant[b"conversations_started"] == b"2" and tenant[b"decisions_deny"] == b"2"
        assert tenant[b"turns"] == b"4" and tenant[b"tokens"] == b"52"
        assert await redis.zcard(keys.tenant_denials("acme")) == 2
        assert await redis.hgetall(keys.tenant("globex")) == {
            b"conversations_started": b"1",
            b"turns": b"1",
            b"tokens": b"0",
        }
        fence = await redis.hgetall(keys.conversation_fence("acme", "c1"))
        assert fence == {b"conversation.events:0": b"105", b"policy.decisions:1": b"101"}

    with_redis(stack, scenario, keys)


def test_redelivered_batch_applies_nothing_and_leaves_state_identical(stack: Settings) -> None:
    keys = new_keys()
    batch = groups_of(records(), keys)

    async def scenario(redis: aioredis.Redis) -> None:
        writer = ProjectionWriter(redis)
        await writer.apply(batch)
        before = await dump(redis, keys)
        again = await writer.apply(batch)
        assert again == WriteResult(applied=0, skipped=len(batch), round_trips=1)
        assert await dump(redis, keys) == before
        # 3 conversations x 4-5 keys, 2 tenants x 4-5 keys (":seen" and ":conversations" included)
        assert len(before) == 23

    with_redis(stack, scenario, keys)


def test_partial_redelivery_applies_exactly_the_records_not_yet_applied(stack: Settings) -> None:
    keys, reference = new_keys(), new_keys()
    recs = records()[:8]

    async def scenario(redis: aioredis.Redis) -> None:
        writer = ProjectionWriter(redis)
        first = await writer.apply(groups_of(recs[0:5], keys))  # records 1..5
        second = await writer.apply(groups_of(recs[2:8], keys))  # records 3..8: 3..5 are redeliveries
        assert first.applied == len(groups_of(recs[0:5], keys))
        assert second.applied == len(groups_of(recs[5:8], keys))  # exactly records 6..8
        assert second.skipped == len(groups_of(recs[2:5], keys))
        await ProjectionWriter(redis).apply(groups_of(recs, reference))
        assert await dump(redis, keys) == await dump(redis, reference)

    with_redis(stack, scenario, keys, reference)


def test_writer_reloads_its_script_after_script_flush_and_still_fences(stack: Settings) -> None:
    keys = new_keys()
    recs = records()

    async def scenario(redis: aioredis.Redis) -> None:
        writer = ProjectionWriter(redis)
        await writer.apply(groups_of(recs[:6], keys))
        await redis.script_flush()
        result = await writer.apply(groups_of(recs[3:], keys))  # NOSCRIPT → load → redo
        assert result.applied == len(groups_of(recs[6:], keys))
        assert result.skipped == len(groups_of(recs[3:6], keys))
        assert result.round_trips >= 2  # a warm writer with its script cached reports 1
        again = await writer.apply(groups_of(recs, keys))
        assert (again.applied, again.round_trips) == (0, 1)
        conv = await redis.hgetall(keys.conversation("acme", "c1"))
        assert conv[b"turns"] == b"2" and conv[b"status"] == b"closed"

    with_redis(stack, scenario, keys)


def _counting_client(stack: Settings) -> aioredis.Redis:
    pool = ConnectionPool.from_url(stack.redis_url, connection_class=CountingConnection, socket_timeout=10)
    return aioredis.Redis(connection_pool=pool)


def test_round_trips_after_script_flush_count_the_failed_pipeline(stack: Settings) -> None:
    keys = new_keys()
    recs = records()

    async def scenario(redis: aioredis.Redis) -> None:
        client = _counting_client(stack)
        try:
            writer = ProjectionWriter(client)
            await writer.apply(groups_of(recs[:2], keys))
            await redis.script_flush()
            CountingConnection.sends = 0
            result = await writer.apply(groups_of(recs[2:], keys))
            assert CountingConnection.sends == 3
            assert result.round_trips == CountingConnection.sends
        finally:
            await client.aclose()

    with_redis(stack, scenario, keys)


def test_batch_of_500_groups_is_one_round_trip_once_the_script_is_loaded(stack: Settings) -> None:
    keys = new_keys()
    msgs = [
        (
            _event(1000 + i, MessageSubmitted(f"t{i}", "user", "hi", "slm-1", 1), "acme", "big"),
            Position(EVENTS, 0, 1000 + i),
        )
        for i in range(250)
    ]
    batch = groups_of(msgs, keys)
    assert len(batch) == 500

    async def scenario(redis: aioredis.Redis) -> None:
        client = _counting_client(stack)
        try:
            writer = ProjectionWriter(client)
            await client.ping()  # connect (HELLO etc.) before counting
            CountingConnection.sends = 0
            cold = await writer.apply(groups_of(records()[:1], keys))
            assert cold.round_trips == 2 == CountingConnection.sends  # SCRIPT LOAD + the pipeline
            CountingConnection.sends = 0
            result = await writer.apply(batch)
            assert result == WriteResult(applied=500, skipped=0, round_trips=1)
            assert CountingConnection.sends == 1
        finally:
            await client.aclose()
        assert await redis.hget(keys.conversation("acme", "big"), "turns") == b"250"

    with_redis(stack, scenario, keys)


def test_checkpoint_hash_records_offsets_in_the_same_round_trip(stack: Settings) -> None:
    keys = new_keys()
    checkpoint = keys.checkpoint("read-models")

    async def scenario(redis: aioredis.Redis) -> None:
        writer = ProjectionWriter(redis)
        await writer.apply(groups_of(records()[:1], keys))  # warm: script loaded
        result = await writer.apply(
            groups_of(records()[1:4], keys),
            (
                checkpoint,
                {"conversation.events:0": 101, "conversation.events:1": 100, "policy.decisions:0": 100},
            ),
        )
        assert (result.applied, result.round_trips) == (len(groups_of(records()[1:4], keys)), 1)
        assert await redis.hgetall(checkpoint) == {
            b"conversation.events:0": b"101",
            b"conversation.events:1": b"100",
            b"policy.decisions:0": b"100",
        }
        only = await writer.apply([], (checkpoint, {"conversation.events:0": 104}))
        assert (only.applied, only.skipped) == (0, 0)
        assert await redis.hget(checkpoint, "conversation.events:0") == b"104"

    with_redis(stack, scenario, keys)


def test_recent_denials_keep_only_the_newest_fifty_by_event_time(stack: Settings) -> None:
    keys = new_keys()
    # 60 denials delivered newest-first: the kept ones depend on event time, not on arrival.
    denials = [(_decision(2000 + i, f"d{i}", 1, "deny"), Position(DECISIONS, 0, 59 - i)) for i in range(60)]
    arrival = sorted(denials, key=lambda r: r[1].offset)

    async def scenario(redis: aioredis.Redis) -> None:
        await ProjectionWriter(redis).apply(groups_of(arrival, keys))
        kept = await redis.zrange(keys.tenant_denials("acme"), 0, -1, withscores=True)
        assert len(kept) == RECENT_DENIALS
        assert [int(score) for _, score in kept] == [T0 + 2000 + i for i in range(10, 60)]

    with_redis(stack, scenario, keys)


def test_a_guarded_batch_writes_nothing_once_its_guard_is_gone(stack: Settings) -> None:
    keys = new_keys()
    checkpoint = keys.checkpoint("read-models")

    async def scenario(redis: aioredis.Redis) -> None:
        writer = ProjectionWriter(redis)
        await writer.apply(groups_of(records()[:1], keys))  # warm: script loaded
        before = await dump(redis, keys)
        missing = await writer.apply(
            groups_of(records()[1:4], keys), (checkpoint, {"conversation.events:0": 3}), guard=keys.sentinel()
        )
        assert (missing.lost, missing.applied, missing.round_trips) == (True, 0, 1)
        assert await dump(redis, keys) == before  # no fence moved, no checkpoint written
        await set_guard(redis, keys.sentinel(), "1")
        found = await writer.apply(groups_of(records()[1:4], keys), guard=keys.sentinel())
        assert (found.lost, found.applied, found.round_trips) == (
            False,
            len(groups_of(records()[1:4], keys)),
            1,
        )

    with_redis(stack, scenario, keys)


# Delivery schedules Kafka can produce under at-least-once: batches that resume at or before
# the last delivered record (a rewind to an older commit), with duplicates inside a batch.
_schedule = st.lists(
    st.tuples(st.integers(0, 13), st.integers(1, 13), st.booleans()),  # rewind depth, batch size, duplicate
    min_size=1,
    max_size=8,
)


@settings(max_examples=25, deadline=None)
@given(schedule=_schedule, replay=st.lists(st.integers(0, 12), max_size=10))
def test_any_redelivery_schedule_ends_in_the_state_of_a_partition_by_partition_replay(
    stack: Settings, schedule: list[tuple[int, int, bool]], replay: list[int]
) -> None:
    recs = records()
    keys, reference = new_keys(), new_keys()

    async def scenario(redis: aioredis.Redis) -> None:
        writer = ProjectionWriter(redis)
        await ProjectionWriter(redis).apply(groups_of(partition_by_partition(recs), reference))
        delivered = 0  # records [0, delivered) have been handed to the writer at least once
        steps = list(schedule)
        while delivered < len(recs):
            rewind, size, dup = steps.pop(0) if steps else (0, len(recs), False)
            start = max(0, delivered - rewind)
            batch = recs[start : start + size]
            if dup:
                batch = [r for r in batch for _ in (0, 1)]
            await writer.apply(groups_of(batch, keys))
            delivered = max(delivered, start + len(recs[start : start + size]))
        # Finally any subset of already-applied records, in any order, changes nothing.
        stale = await writer.apply(groups_of([recs[i] for i in replay], keys))
        assert stale.applied == 0
        assert await dump(redis, keys) == await dump(redis, reference)

    with_redis(stack, scenario, keys, reference)


@settings(max_examples=20, deadline=None)
@given(cuts=st.lists(st.integers(1, 13), max_size=6), dup=st.booleans(), per_call=st.integers(1, 5))
def test_one_call_per_batch_writes_what_one_call_per_group_writes(
    stack: Settings, cuts: list[int], dup: bool, per_call: int
) -> None:
    """However a batch's groups are packed into Lua calls (all in one, a few per call, one each:
    the layout before one call per batch), the space ends byte-identical, and so do the counts."""
    recs = records()
    recs = recs + recs[:5] if dup else recs  # a redelivery inside the last batches
    keys, reference = new_keys(), new_keys()

    async def scenario(redis: aioredis.Redis) -> None:
        packed, single = ProjectionWriter(redis, per_call=per_call), ProjectionWriter(redis, per_call=1)
        at = 0
        for size in [*cuts, len(recs)]:
            batch = recs[at : at + size]
            got = await packed.apply(groups_of(batch, keys), guard=keys.sentinel())
            want = await single.apply(groups_of(batch, reference), guard=reference.sentinel())
            assert (got.applied, got.skipped, got.deduped) == (want.applied, want.skipped, want.deduped)
            assert [(r.cursor, r.offset, r.reason) for r in got.refused] == [
                (r.cursor, r.offset, r.reason) for r in want.refused
            ]
            at += size
        assert await dump(redis, keys) == await dump(redis, reference)

    async def guarded(redis: aioredis.Redis) -> None:
        await redis.set(keys.sentinel(), "1")
        await redis.set(reference.sentinel(), "1")
        await scenario(redis)

    with_redis(stack, guarded, keys, reference)


def test_a_checkpoint_behind_what_the_writer_recorded_drops_the_guard_and_refuses_the_batch(
    stack: Settings,
) -> None:
    keys = new_keys()
    checkpoint = keys.checkpoint("read-models")

    async def scenario(redis: aioredis.Redis) -> None:
        writer = ProjectionWriter(redis)
        await set_guard(redis, keys.sentinel(), "1")
        await redis.hset(checkpoint, mapping={"conversation.events:0": 100})
        fine = await writer.apply(
            groups_of(records()[:1], keys),
            (checkpoint, {"conversation.events:0": 100}),
            guard=keys.sentinel(),
            expect=(checkpoint, {"conversation.events:0": 100}),
        )
        assert (fine.lost, fine.rolled_back, fine.round_trips) == (False, False, 2)  # 2: scripts loaded
        before = await dump(redis, keys)
        behind = await writer.apply(
            groups_of(records()[1:4], keys),
            (checkpoint, {"conversation.events:0": 103}),
            guard=keys.sentinel(),
            expect=(checkpoint, {"conversation.events:0": 101}),  # this writer recorded 101 before
        )
        assert (behind.lost, behind.rolled_back, behind.applied) == (True, True, 0)
        dropped = guard_for(keys.sentinel(), checkpoint, is_cluster_client(redis))  # its copy there
        del before[dropped.removeprefix(keys.namespace)]
        assert await dump(redis, keys) == before  # only the guard went

    with_redis(stack, scenario, keys)


def test_checkpoint_offsets_only_rise(stack: Settings) -> None:
    keys = new_keys()
    checkpoint = keys.checkpoint("read-models")

    async def scenario(redis: aioredis.Redis) -> None:
        writer = ProjectionWriter(redis)
        await writer.apply([], (checkpoint, {"conversation.events:0": 7, "conversation.events:1": 3}))
        await writer.apply([], (checkpoint, {"conversation.events:0": 5, "conversation.events:1": 4}))
        assert await redis.hgetall(checkpoint) == {
            b"conversation.events:0": b"7",
            b"conversation.events:1": b"4",
        }

    with_redis(stack, scenario, keys)
