"""The Lua writer and the in-memory model (``projections.model``) end in the same state for
batches with duplicate deliveries, chained and forged decisions — and a guard that vanishes."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.config import Settings
from ledgerflow.contracts.chain import ChainHead, decision_chain_key
from ledgerflow.contracts.events import Event
from ledgerflow.projections.conversations import project
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.model import MemorySpace
from ledgerflow.projections.ops import Position
from ledgerflow.projections.writer import ProjectionWriter
from ledgerflow.redisclient import async_client
from tests.unit.projections.test_conditions import decision, head, turn

EVENTS, DECISIONS = "conversation.events", "policy.decisions"


def _log(kinds: list[int]) -> list[tuple[Event, Position]]:
    """A log of turns (some delivered again) and a decision chain (some links forged, some
    decisions preceded by a forgery for their own turn)."""
    placed: list[tuple[Event, Position]] = []
    last: ChainHead | None = None
    for i, kind in enumerate(kinds):
        if kind == 0:
            placed.append((turn(i % 4), Position(EVENTS, 0, 2 * i)))  # ids repeat: duplicates
        elif kind in (1, 3):
            if kind == 3:  # a forgery for the turn the next decision answers, linked to nothing
                forged = decision(i, ChainHead(decision_chain_key("acme", "c1"), 1, "b" * 64))
                placed.append((forged, Position(DECISIONS, 0, 2 * i)))
            d = decision(i, last)
            last = head(d)
            placed.append((d, Position(DECISIONS, 0, 2 * i + 1)))
        else:
            placed.append(
                (
                    decision(i, ChainHead(decision_chain_key("acme", "c1"), 1, "b" * 64)),
                    Position(DECISIONS, 0, 2 * i),
                )
            )  # forged
    return placed


async def _dump(redis: aioredis.Redis, keys: Keys) -> dict[str, Any]:
    out: dict[str, Any] = {}
    async for raw in redis.scan_iter(match=f"{keys.namespace}*", count=1000):
        key = raw.decode()
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            out[key] = {k.decode(): v.decode() for k, v in (await redis.hgetall(key)).items()}
        elif kind == "list":
            out[key] = [v.decode() for v in await redis.lrange(key, 0, -1)]
        elif kind == "zset":
            out[key] = {m.decode(): s for m, s in await redis.zrange(key, 0, -1, withscores=True)}
    return out


@settings(max_examples=15, deadline=None)
@given(kinds=st.lists(st.sampled_from([0, 0, 1, 1, 2, 3]), min_size=1, max_size=24), cut=st.integers(1, 24))
def test_redis_and_the_model_agree(stack: Settings, kinds: list[int], cut: int) -> None:
    keys = Keys(f"lf:test-{uuid.uuid4().hex}:")
    placed = _log(kinds)

    async def run() -> None:
        redis = async_client(stack.redis_url, socket_timeout=10)
        try:
            writer, model = ProjectionWriter(redis), MemorySpace()
            for part in (placed[:cut], placed[cut:]):  # two batches
                groups = [g for event, at in part for g in project(event, at, keys)]
                ours = await writer.apply(groups)
                theirs = model.apply(groups)
                refusals = (sorted(map(repr, ours.refused)), sorted(map(repr, theirs.refused)))
                assert (ours.applied, ours.deduped) == (theirs.applied, theirs.deduped)
                assert refusals[0] == refusals[1]  # the writer groups calls per entity: order differs
            assert await _dump(redis, keys) == model.data
        finally:
            found = [k async for k in redis.scan_iter(match=f"{keys.namespace}*")]
            if found:
                await redis.delete(*found)
            await redis.aclose()

    asyncio.run(run())
