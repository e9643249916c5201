"""The folded replay (one process and parallel) writes exactly the space the fenced replay writes.

Records go straight onto the topics (explicit partitions), hostile ones included: a
duplicate delivery, a decision forged off its chain, bytes that do not decode, more
denials than a tenant keeps (the rank trim, merged across workers), and — for the parallel
rebuild's conflict check — logs whose conversations or ids span partitions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead, decision_chain_key
from ledgerflow.contracts.events import Event
from ledgerflow.kafka.placement import placement
from ledgerflow.projections import fresh, freshwrite
from ledgerflow.projections.fold import Fold, Writes
from ledgerflow.projections.fresh import FreshReplay
from ledgerflow.projections.guards import set_guard
from ledgerflow.projections.ops import Position
from ledgerflow.projections.parallel import replay_parallel
from ledgerflow.projections.rebuild import projectable, replay
from ledgerflow.projections.writer import SpaceLost
from ledgerflow.redisclient import async_client
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, TOPICS
from tests.integration.test_projection_writer import drop, dump, new_keys
from tests.unit.projections.test_fold import _decision, _started, _turn

Placed = list[tuple[str, int, bytes]]  # (base topic, partition, value)
PARTITIONS = next(t.partitions for t in TOPICS if t.base == CONVERSATION_EVENTS)


def _home(conv: str) -> int:
    """The partition a conversation's records belong in (Kafka's default partitioner): a turn
    anywhere else is misrouted, and no way of replaying projects it."""
    return placement(conv.encode(), PARTITIONS)


def _conversation(conv: str, tenant: str, partition: int, turns: int, first: int) -> Placed:
    out: Placed = [(CONVERSATION_EVENTS, partition, codec.encode(_started(conv, first, tenant)))]
    head: ChainHead | None = None
    for i in range(first, first + turns):
        turn = _turn(conv, i, tenant)
        decided = _decision(turn, head, "deny" if i % 3 else "allow")
        assert decided.sequence is not None and decided.hash is not None
        head = ChainHead(decision_chain_key(tenant, conv), decided.sequence, decided.hash)
        out += [
            (CONVERSATION_EVENTS, partition, codec.encode(turn)),
            (POLICY_DECISIONS, partition, codec.encode(decided)),
        ]
    return out


def _log() -> Placed:
    """12 conversations of two tenants, each in its own partition, ~80 denials for one tenant,
    and the hostile records."""
    log: Placed = []
    for c in range(12):
        log += _conversation(f"c{c}", "acme" if c % 4 else "globex", _home(f"c{c}"), 10, 100 * c)
    dup = _turn("c1", 101, "acme")
    log.append((CONVERSATION_EVENTS, _home("c1"), codec.encode(dataclasses.replace(dup))))  # delivered twice
    forged = _decision(
        _turn("c2", 5000, "acme"), ChainHead(decision_chain_key("acme", "c2"), 3, "cd" * 32), "deny"
    )
    log.append((POLICY_DECISIONS, _home("c2"), codec.encode(forged)))
    log.append((CONVERSATION_EVENTS, 3, b"\xc3\x01garbage"))
    return log


async def _produce(settings: Settings, log: Placed) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        for base, partition, value in log:
            key = None
            if value.startswith(codec.MAGIC) and len(value) > 20:
                event: Event = codec.decode(value)
                key = (event.payload.conversation_id if base == POLICY_DECISIONS else event.subject).encode()  # type: ignore[attr-defined]
            await producer.send_and_wait(settings.topic(base), value, key=key, partition=partition)
    finally:
        await producer.stop()


def _three_ways(
    settings: Settings, log: Placed
) -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
    """The space of the fenced replay, of the folded one, and of the parallel one."""

    async def run() -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
        await _produce(settings, log)
        redis = async_client(settings.redis_url, socket_timeout=30)
        fenced, fresh, parallel = new_keys(), new_keys(), new_keys()
        try:
            await replay(settings, redis, fenced)
            await FreshReplay(settings, redis, fresh).run()
            await replay_parallel(settings, redis, parallel, processes=2)
            return await dump(redis, fenced), await dump(redis, fresh), await dump(redis, parallel)
        finally:
            await drop(redis, fenced, fresh, parallel)
            await redis.aclose()

    return asyncio.run(run())


def test_folded_and_parallel_replays_write_the_space_the_fenced_replay_writes(settings: Settings) -> None:
    fenced, fresh, parallel = _three_ways(settings, _log())
    denials = [k for k in fenced if k.endswith("tenant:{acme}:denials")]
    assert denials and len(fenced[denials[0]][1]) == 50  # type: ignore[index, arg-type]
    assert any(k.endswith(":quarantined") for k in fenced)
    assert fresh == fenced
    assert parallel == fenced


def test_a_log_the_workers_cannot_split_is_rebuilt_in_one_process(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # c5's turn 500 again, as a turn of an acme conversation the other of two processes replays:
    # the tenant counts the id once, whichever process reads it first.
    other = next(f"c{c}" for c in range(12) if c % 4 and _home(f"c{c}") % 2 != _home("c5") % 2)
    twin = dataclasses.replace(_turn("c5", 500, "acme"), subject=other)
    log = [*_log(), (CONVERSATION_EVENTS, _home(other), codec.encode(twin))]
    with caplog.at_level(logging.WARNING, logger="ledgerflow.projections.parallel"):
        fenced, fresh, parallel = _three_ways(settings, log)
    assert "replaying in one process instead" in caplog.text
    assert _order_free(fresh) == _order_free(fenced)
    assert _order_free(parallel) == _order_free(fenced)


def test_a_turn_outside_its_conversations_partition_is_left_out_by_every_replay(settings: Settings) -> None:
    """A turn of c1 in another partition (a producer with another partitioner): projected, it would
    feed c1 from two partitions in no defined order (the live projector leaves it out too)."""
    stray = _conversation("c1", "acme", (_home("c1") + 1) % PARTITIONS, 1, 7000)[1:2]
    fenced, fresh, parallel = _three_ways(settings, _log() + stray)
    assert fresh == fenced and parallel == fenced
    turns = next(value for key, (kind, value) in fenced.items() if key.endswith("conv:{acme/c1}:turns"))  # type: ignore[misc]
    assert len(turns) == 10 and not any(b'"turn_id":"t7000"' in t for t in turns), turns


def _order_free(space: dict[str, object]) -> dict[str, object]:
    """What must not depend on the order two partitions are read in, when one conversation or one
    id spans them (the live projector reads them in whatever order, too): every count, every
    turn, every id counted — not which record came last (lists as multisets, no last-writer
    fields, no dedupe positions, index members without their last-activity score)."""
    out: dict[str, object] = {}
    for key, (kind, value) in space.items():  # type: ignore[misc]
        if kind == "list" or (kind == "hash" and key.endswith(":seen")):
            value = sorted(value)
        elif kind == "hash":
            value = {f: v for f, v in value.items() if f not in (b"updated_at", b"last_event_id")}
        elif kind == "zset" and key.endswith(":conversations"):
            value = sorted(member for member, _ in value)
        out[key] = (kind, value)
    return out


def test_a_batch_finds_the_guard_gone_and_writes_nothing(stack: Settings) -> None:
    keys = new_keys()

    async def run() -> None:
        redis = async_client(stack.redis_url, socket_timeout=10)
        try:
            writes = Writes(hset={keys.conversation("acme", "c1"): {"status": "open"}})
            with pytest.raises(SpaceLost):
                await freshwrite.write(redis, writes, guard=keys.replay_guard("gone"))
            assert await dump(redis, keys) == {}
            await set_guard(redis, keys.replay_guard("here"), "1")  # every slot's copy on a cluster
            assert await freshwrite.write(redis, writes, guard=keys.replay_guard("here")) == 1
            assert (await dump(redis, keys))[keys.conversation("acme", "c1").removeprefix(keys.namespace)]
        finally:
            await drop(redis, keys)
            await redis.aclose()

    asyncio.run(run())


def test_a_master_that_lost_its_scripts_gets_each_batch_once(stack: Settings) -> None:
    """A Redis (on a cluster: one master — restarted, or a replica promoted) whose script cache is
    empty between two batches: each batch's counters are applied once. With EVALSHA, that master's
    calls failed with NOSCRIPT while the others' succeeded, and the batch sent again doubled them."""
    keys = new_keys()
    tenants = [f"t{i}" for i in range(24)]  # spread over every master's slots on a cluster

    async def run() -> None:
        redis = async_client(stack.redis_url, socket_timeout=10)
        try:
            writes = Writes(hincrby={keys.tenant(t): {"turns": 1} for t in tenants})
            assert await freshwrite.write(redis, writes) == len(tenants)
            nodes = redis.get_primaries() if hasattr(redis, "get_primaries") else [None]
            await redis.execute_command("SCRIPT FLUSH", **({"target_nodes": nodes[0]} if nodes[0] else {}))
            assert await freshwrite.write(redis, writes) == len(tenants)
            counts = {t: int(await redis.hget(keys.tenant(t), "turns") or 0) for t in tenants}
            assert set(counts.values()) == {2}, f"a batch applied twice or lost: {counts}"
        finally:
            await drop(redis, keys)
            await redis.aclose()

    asyncio.run(run())


def test_each_batch_is_sent_to_redis_before_the_next_one_is_decoded(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write of a batch is started as a task so that Redis runs it while the replay decodes the
    next batch; a task runs only when the replay yields, and fetching records already fetched does
    not. Each batch's write must start (be packed and sent) right after its fold, not after the next
    batch's decoding (where it used to start, serially with it, when the replay awaited it)."""
    seen: list[str] = []
    real_write, real_records = freshwrite.write, Fold.records

    async def write(*args: Any, **kwargs: Any) -> int:
        seen.append("write")
        return await real_write(*args, **kwargs)

    def records(self: Fold, *args: Any, **kwargs: Any) -> Writes:
        seen.append("fold")
        return real_records(self, *args, **kwargs)

    def decoded(*args: Any, **kwargs: Any) -> list[tuple[Event, Position]]:
        seen.append("decode")
        return projectable(*args, **kwargs)

    monkeypatch.setattr(freshwrite, "write", write)
    monkeypatch.setattr(Fold, "records", records)
    monkeypatch.setattr(fresh, "projectable", decoded)
    monkeypatch.setattr(fresh, "FETCH", 20)  # many batches

    async def run() -> dict[str, object]:
        await _produce(settings, _log())
        redis = async_client(settings.redis_url, socket_timeout=30)
        keys = new_keys()
        try:
            await FreshReplay(settings, redis, keys).run()
            return await dump(redis, keys)
        finally:
            await drop(redis, keys)
            await redis.aclose()

    space = asyncio.run(run())
    assert space and seen.count("fold") >= 5, seen
    after_fold = [
        seen[i + 1] if i + 1 < len(seen) else "end" for i, step in enumerate(seen) if step == "fold"
    ]
    assert set(after_fold) == {"write"}, seen
