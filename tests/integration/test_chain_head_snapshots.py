"""The policy agent's chain-head snapshots in a real Redis (one, or a Redis Cluster): a save only
moves forward — an older one (a stalled member waking up) leaves the newer snapshot as it is —
and a dropped snapshot is gone, so saves start again from a re-created topic's offsets. A save
calls its script by hash: a Redis that lost its script cache (restarted, flushed, a replica
promoted) still takes it, and a save retried through an outage is written once Redis is back."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ledgerflow.agents.ports import Snapshot
from ledgerflow.agents.snapshots import RedisChainHeads
from ledgerflow.config import Settings
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.redisclient import sync_client
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import stop as stop_process
from tests.support.processes import free_port
from tests.support.redismode import redis_mode


def _snapshot(out: int, sequence: int) -> Snapshot:
    return Snapshot(
        last_input=out * 2,
        out_offset=out,
        heads={"acme/k": ChainHead("acme/k", sequence, f"{sequence:064x}")},
    )


def _heads(stack: Settings, redis_url: str | None = None) -> RedisChainHeads:
    return RedisChainHeads(
        stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:8]}.", redis_url=redis_url), "policy"
    )


@contextmanager
def _private_redis(tmp_path: Path) -> Iterator[redis_stack.RedisNode]:
    """A redis-server of this test alone (no persistence): stopped and flushed at will."""
    node = redis_stack.RedisNode(tmp_path / "redis", "127.0.0.1", free_port())
    redis_stack.start(node)
    try:
        yield node
    finally:
        stop_process(node.process)


def _url(node: redis_stack.RedisNode) -> str:
    return f"redis://{node.host}:{node.port}/0"


@contextmanager
def _own_redis(stack: Settings, tmp_path: Path) -> Iterator[str]:
    """A Redis this test may flush: the session's cluster is private already; a single Redis is
    the shared one, so a private one instead."""
    if redis_mode() == "cluster":
        yield stack.redis_url
        return
    with _private_redis(tmp_path) as node:
        yield _url(node)


def test_an_older_save_leaves_the_newer_snapshot_and_a_drop_starts_over(stack: Settings) -> None:
    heads = _heads(stack)

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


def test_a_redis_that_lost_its_scripts_still_takes_saves(stack: Settings, tmp_path: Path) -> None:
    """SCRIPT FLUSH between two saves of several partitions (on a cluster: slots on different
    masters, the script flushed on every one)."""
    with _own_redis(stack, tmp_path) as url:
        heads = _heads(stack, url)

        async def run() -> None:
            try:
                await heads.save({p: _snapshot(10 + p, 1) for p in range(6)})
                with sync_client(url, socket_timeout=10) as client:
                    client.script_flush()
                await heads.save({p: _snapshot(20 + p, 2) for p in range(6)})
                for p in range(6):
                    found = await heads.load(p)
                    assert (found.out_offset, found.heads["acme/k"].sequence) == (20 + p, 2)
            finally:
                for p in range(6):
                    await heads.drop(p)

        asyncio.run(run())


def test_a_save_retried_through_an_outage_is_written_when_redis_is_back(
    stack: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped between two saves; the second is retried until a new (empty) Redis answers
    on the port, and is then written there. A retry used to execute the pipeline the failed
    attempt had emptied: nothing sent, and the save counted as done."""
    caplog.set_level(logging.WARNING, logger="ledgerflow.agents.snapshots")
    with _private_redis(tmp_path) as node:
        heads = _heads(stack, _url(node))

        async def run() -> None:
            await heads.save({0: _snapshot(3, 1)})
            stop_process(node.process)
            saving = asyncio.create_task(heads.save({0: _snapshot(7, 2)}))
            while not any("saving chain heads" in r.getMessage() for r in caplog.records):
                assert not saving.done(), "the save returned while Redis was down"
                await asyncio.sleep(0.05)
            redis_stack.start(node)
            await asyncio.wait_for(saving, timeout=60)
            found = await heads.load(0)
            assert (found.out_offset, found.heads["acme/k"].sequence) == (7, 2)

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
            # Redis went back in time under the agent (a restart from an older dump): the stored
            # snapshot (6) is older than the one the agent's partial save completes (8).
            partial_of_8 = dataclasses.replace(_snapshot(9, 5), complete=False, base=8)
            assert await heads.save({0: partial_of_8}) == {0}
            assert (await heads.load(0)).out_offset == 6, "nothing written over the older snapshot"
        finally:
            await heads.drop(0)
            await heads.drop(1)

    asyncio.run(run())
