"""Running a batch of fenced Lua calls on a Redis Cluster.

On one Redis a batch is one pipeline whose calls run in order, so a first call that finds the
checkpoint behind (and drops the guard) stops every later call of the pipeline. On a cluster
the calls go to each master in parallel, so:

1. a checking call (``check_first``) runs alone first, and nothing else is sent unless it passed;
2. each master that took writes is asked ``WAIT 1`` on the same connection, right after them:
   the batch is acknowledged (and its Kafka offsets committed) only once the replica has every
   write, so a failover that promotes that replica rolls back nothing the projector moved past.
   A replica that does not answer within ``REPLICA_WAIT_MS`` (none connected: its master just
   failed over and the old one is not back) is logged, and the batch goes on: availability over
   waiting, with the checkpoint check above as the net for a rollback on the checkpoint's shard.
   A ``WAIT`` that reaches a master demoted since the slot map was read fails the batch as a
   transient error (``redisclient.execute_waited``): the batch is retried, never counted done.
"""

from __future__ import annotations

import logging
from typing import Any

import redis.asyncio as aioredis

from ledgerflow.redisclient import REPLICA_WAIT_MS, execute_waited

log = logging.getLogger(__name__)

Call = tuple[str, list[str], list[str | bytes]]  # sha (or the script, with EVAL), KEYS, ARGV


async def run_calls(
    redis: aioredis.Redis, calls: list[Call], check_first: bool, command: str = "EVALSHA"
) -> list[Any]:
    """Results of ``calls`` in order; when the checking call returns non-zero, only its result."""
    if check_first and calls:
        first = await _pipeline(redis, calls[:1], command)
        if int(first[0]) != 0:
            return first
        return first + await _pipeline(redis, calls[1:], command)
    return await _pipeline(redis, calls, command)


async def _pipeline(redis: aioredis.Redis, calls: list[Call], command: str) -> list[Any]:
    if not calls:
        return []
    await redis.initialize()  # the slot map, before it is looked up
    pipe = redis.pipeline(transaction=False)
    nodes = {}
    for sha, keys, argv in calls:
        # execute_command: redis-py's cluster pipeline refuses evalsha() but routes EVALSHA/EVAL by its keys
        pipe.execute_command(command, sha, len(keys), *keys, *argv)
        node = redis.get_node_from_key(keys[0])  # type: ignore[attr-defined]
        nodes[node.name] = node
    for node in nodes.values():  # after the node's writes, on the same connection
        pipe.execute_command("WAIT", 1, REPLICA_WAIT_MS, target_nodes=node)
    results = await execute_waited(pipe)
    for name, acked in zip(nodes, results[len(calls) :], strict=True):
        _note_replica(name, int(acked) >= 1)
    return list(results[: len(calls)])


_UNCONFIRMED: set[str] = set()  # masters whose replica missed the last wait: logged once, not per batch


def _note_replica(master: str, confirmed: bool) -> None:
    if confirmed and master in _UNCONFIRMED:
        _UNCONFIRMED.discard(master)
        log.warning("redis cluster: a replica of %s confirms the projector's writes again", master)
    elif not confirmed and master not in _UNCONFIRMED:
        _UNCONFIRMED.add(master)
        log.warning(
            "redis cluster: no replica of %s confirmed a batch within %d ms (none connected?); "
            "going on without, logged again once one does",
            master,
            REPLICA_WAIT_MS,
        )
