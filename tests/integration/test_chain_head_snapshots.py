"""The policy agent's chain-head snapshots in a real Redis (one, or a Redis Cluster): a save only
moves forward — an older one (a stalled member waking up) leaves the newer snapshot as it is —
and a dropped snapshot is gone, so saves start again from a re-created topic's offsets."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

from ledgerflow.agents.ports import Snapshot
from ledgerflow.agents.snapshots import RedisChainHeads
from ledgerflow.config import Settings
from ledgerflow.contracts.chain import ChainHead


def _snapshot(out: int, sequence: int) -> Snapshot:
    return Snapshot(
        last_input=out * 2,
        out_offset=out,
        heads={"acme/k": ChainHead("acme/k", sequence, f"{sequence:064x}")},
    )


def test_an_older_save_leaves_the_newer_snapshot_and_a_drop_starts_over(stack: Settings) -> None:
    heads = RedisChainHeads(stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:8]}."), "policy")

    async def run() -> None:
        try:
            await heads.save({0: _snapshot(10, 3)})
            await heads.save({0: _snapshot(5, 2)})  # the stalled member's save
            found = await heads.load(0)
            assert (found.out_offset, found.last_input, found.heads["acme/k"].sequence) == (10, 20, 3)
            await heads.save({0: _snapshot(10, 3)})  # the same snapshot again: harmless
            await heads.drop(0)  # the topic was re-created: its offsets start at 0 again
            assert await heads.load(0) == Snapshot()
            await heads.save({0: _snapshot(1, 1)})
            assert (await heads.load(0)).out_offset == 1
        finally:
            await heads.drop(0)

    asyncio.run(run())


def test_a_partial_save_never_starts_a_snapshot(stack: Settings) -> None:
    """With no stored snapshot (Redis lost it), a save of only the chains changed since the last one
    writes nothing and names its partition: the agent then saves every head."""
    heads = RedisChainHeads(stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:8]}."), "policy")
    partial = dataclasses.replace(_snapshot(4, 2), complete=False)

    async def run() -> None:
        try:
            assert await heads.save({0: partial, 1: _snapshot(4, 2)}) == {0}
            assert await heads.load(0) == Snapshot() and (await heads.load(1)).out_offset == 4
            assert await heads.save({0: _snapshot(4, 2)}) == set()
            assert await heads.save({0: dataclasses.replace(_snapshot(6, 3), complete=False)}) == set()
            assert (await heads.load(0)).heads["acme/k"].sequence == 3, (
                "a partial save completes a stored one"
            )
        finally:
            await heads.drop(0)
            await heads.drop(1)

    asyncio.run(run())
