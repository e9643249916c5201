"""Rebuilding a fresh space with one process per share of the partitions, then checking the merge.

Worker *i* of *n* replays every partition whose number is *i* mod *n* with its own
``FreshReplay`` into the same new space; partition *p* of ``conversation.events`` and the
decisions co-partitioned with it land in the same worker, and so does everything of one
conversation. Each worker's space is exact for its records (see ``fold.py``); the union is
the space one process would write when the workers' writes commute. After they finished,
``merge`` looks at every key more than one worker wrote:

- fences and the checkpoint: one field per ``topic:partition``, disjoint by construction;
- counters only (HINCRBY): sums commute;
- dedupe hashes (``Once`` keys): the ids must be disjoint — HLEN must equal the sum of the
  ids each worker counted;
- sorted sets: the members must be disjoint (ZCARD = the sum), and the rank trim the
  workers applied (keep the top *K*) is applied once more to the union: the top *K* of a
  union of top-*K* sets is the top *K* of all;
- anything else written by two workers (a field set, a list, a chain head) is a conflict.

Logs the agents and the edge write never conflict (a conversation's records share one
partition, its decisions the co-partitioned one). A log that does — records of one
conversation on two partitions, one event id in two conversations, written from outside
— makes ``replay_parallel`` clear the space and replay it in one process instead, which
folds every record in log order like the fenced replay.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from aiokafka import TopicPartition

from ledgerflow import gcpolicy
from ledgerflow.config import Settings
from ledgerflow.envnumbers import env_whole
from ledgerflow.projections.fold import Writes
from ledgerflow.projections.fresh import FreshReplay
from ledgerflow.projections.guards import guard_complete, is_guard_key
from ledgerflow.projections.keys import FENCE_SUFFIX, Keys
from ledgerflow.projections.rebuild import PROJECTION, Progress, ReplayStats, end_offsets
from ledgerflow.projections.writer import SpaceLost
from ledgerflow.redisclient import async_client

log = logging.getLogger(__name__)

PROCESSES_ENV = "LEDGERFLOW_REBUILD_PROCESSES"

Horizon = list[tuple[str, int, int]]  # (topic, partition, end offset): picklable


MAX_PROCESSES = 1024
STOP_WAIT_S = 5.0  # for a terminated worker process to exit (SIGTERM ends it at once)


def processes_from_env() -> int:
    """Worker processes of a rebuild: ``LEDGERFLOW_REBUILD_PROCESSES``, default the CPU count."""
    return processes_from(os.environ, os.cpu_count())


def processes_from(environ: Mapping[str, str], cpus: int | None) -> int:
    """Pure: ``LEDGERFLOW_REBUILD_PROCESSES`` (1 to ``MAX_PROCESSES``), default ``cpus``;
    ValidationError naming the variable otherwise (0 or a negative count used to mean 1)."""
    return env_whole(environ, PROCESSES_ENV, max(cpus or 1, 1), 1, MAX_PROCESSES)


@dataclass
class ShareReport:
    """What one worker wrote: its stats, and per key what kind of writes (see ``merge``)."""

    stats: ReplayStats
    kinds: dict[str, set[str]] = field(default_factory=dict)  # key -> {"h", "i", "l", "z", "o"}
    members: dict[str, int] = field(default_factory=dict)  # dedupe hash / sorted set -> its size
    trims: dict[str, tuple[int, int]] = field(default_factory=dict)


def _note(kinds: dict[str, set[str]], seen: Iterable[str], writes: Writes) -> None:
    dedupe = set(seen)
    for key in writes.hset:
        kinds.setdefault(key, set()).add("o" if key in dedupe else "h")
    for letter, keys in (("i", writes.hincrby), ("l", writes.rpush), ("z", writes.zadd), ("z", writes.zrem)):
        for key in keys:
            kinds.setdefault(key, set()).add(letter)


async def _share(
    settings: Settings, namespace: str, guard: str | None, until: Horizon, i: int, n: int
) -> ShareReport:
    redis = async_client(settings.redis_url, socket_timeout=60)
    kinds: dict[str, set[str]] = {}
    try:
        fresh = FreshReplay(
            settings, redis, Keys(namespace), guard=guard, share=lambda tp: tp.partition % n == i
        )
        fresh.on_writes = lambda writes: _note(kinds, fresh.fold.seen, writes)
        stats = await fresh.run({TopicPartition(t, p): end for t, p, end in until})
    finally:
        await redis.aclose()
    fold = fresh.fold
    members = {k: len(fold.seen[k]) for k, v in kinds.items() if "o" in v}
    members |= {k: len(fold.zsets.get(k, {})) for k, v in kinds.items() if "z" in v}
    return ShareReport(stats, kinds, members, dict(fold.trims))


def _replay_share(
    settings: Settings, namespace: str, guard: str | None, until: Horizon, i: int, n: int
) -> ShareReport:
    """One worker process (spawned): replay share ``i`` of ``n``."""
    return asyncio.run(_share(settings, namespace, guard, until, i, n))


def exit_with_parent() -> None:
    """In a spawned worker process: exit as soon as the process that started it is gone. A
    rebuild or audit killed (SIGKILL, or SIGTERM on the old code) left its workers writing into
    a space nobody switches to, then blocked for ever on the result pipe, holding the caller's
    stdout and stderr open (a CI step capturing them never ended). The pool's initializer."""
    gcpolicy.tune()  # spawned children start with the default collector thresholds
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


async def merge(redis: aioredis.Redis, keys: Keys, reports: list[ShareReport]) -> str | None:
    """Check the keys several workers wrote and trim shared sorted sets (see the module doc).
    Returns why the merge is not the one-process space, or None."""
    writers: dict[str, list[ShareReport]] = {}
    for report in reports:
        for key in report.kinds:
            writers.setdefault(key, []).append(report)
    checks: list[tuple[str, str, int]] = []  # (key, command, expected size)
    trims: list[tuple[str, tuple[int, int]]] = []
    for key, shared in writers.items():
        if len(shared) < 2 or key.endswith(FENCE_SUFFIX) or key == keys.checkpoint(PROJECTION):
            continue
        letters = set().union(*(r.kinds[key] for r in shared))
        if letters == {"i"}:
            continue
        if letters not in ({"o"}, {"z"}):
            return f"{key} was written by {len(shared)} workers ({''.join(sorted(letters))})"
        checks.append((key, "HLEN" if letters == {"o"} else "ZCARD", sum(r.members[key] for r in shared)))
        cut = {r.trims[key] for r in shared if key in r.trims}
        if len(cut) > 1 or any(start != 0 or stop >= 0 for start, stop in cut):
            return f"{key} was trimmed differently by {len(shared)} workers"
        trims += [(key, c) for c in cut]
    pipe = redis.pipeline(transaction=False)
    for key, command, _ in checks:
        pipe.execute_command(command, key)
    sizes = await pipe.execute() if checks else []
    for (key, _, expected), size in zip(checks, sizes, strict=True):
        if int(size) != expected:
            return f"{key}: {expected} members written by several workers, {size} distinct"
    pipe = redis.pipeline(transaction=False)
    for key, (start, stop) in trims:
        pipe.zremrangebyrank(key, start, stop)
    if trims:
        await pipe.execute()
    return None


async def replay_parallel(
    settings: Settings,
    redis: aioredis.Redis,
    keys: Keys,
    until: dict[TopicPartition, int] | None = None,
    progress: Progress | None = None,
    guard: str | None = None,
    processes: int | None = None,
    *,
    spawn: bool = False,
) -> ReplayStats:
    """``fresh.FreshReplay`` with ``processes`` workers (default ``processes_from_env``); one
    worker runs in this process unless ``spawn`` (keep this process's event loop free)."""
    began = time.perf_counter()
    n = max(processes if processes is not None else processes_from_env(), 1)
    until = until if until is not None else await end_offsets(settings)
    if n == 1 and not spawn:
        return await FreshReplay(settings, redis, keys, guard=guard).run(until, progress)
    horizon = [(tp.topic, tp.partition, end) for tp, end in until.items()]
    loop = asyncio.get_running_loop()
    spawning = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(n, mp_context=spawning, initializer=exit_with_parent)
    try:
        shares = [
            loop.run_in_executor(pool, _replay_share, settings, keys.namespace, guard, horizon, i, n)
            for i in range(n)
        ]
        reports = await asyncio.gather(*shares)
    except BaseException:  # cancelled (a deadline) or a worker failed: no worker writes on
        workers = list((pool._processes or {}).values())
        for process in workers:
            process.terminate()
        for process in workers:  # gone before the caller clears or deletes the space
            process.join(STOP_WAIT_S)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    problem = await merge(redis, keys, list(reports))
    if problem is not None:
        log.warning("parallel rebuild: %s; replaying in one process instead", problem)
        await clear(redis, keys, keep=guard)
        return await FreshReplay(settings, redis, keys, guard=guard).run(until, progress)
    stats = ReplayStats()
    for report in reports:
        for name in ("records", "applied", "skipped", "undecodable", "misrouted", "quarantined", "deduped"):
            setattr(stats, name, getattr(stats, name) + getattr(report.stats, name))
        stats.round_trips += report.stats.round_trips
    if progress is not None:
        progress(stats.records, sum(until.values()))
    stats.seconds = time.perf_counter() - began
    return stats


async def clear(redis: aioredis.Redis, keys: Keys, keep: str | None = None) -> None:
    """Delete the space's keys but ``keep`` (the replay token, every slot's copy on a cluster);
    ``SpaceLost`` if ``keep`` is gone."""
    if keep is not None and not await guard_complete(redis, keep):
        raise SpaceLost(f"{keep} is gone: Redis lost the space during the replay")
    batch: list[bytes] = []
    async for key in redis.scan_iter(match=keys.namespace + "*", count=1000):
        if keep is None or not is_guard_key(key.decode("utf-8", "surrogateescape"), keep):
            batch.append(key)
        if len(batch) >= 500:
            await redis.unlink(*batch)
            batch = []
    if batch:
        await redis.unlink(*batch)
