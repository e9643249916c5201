"""Rebuilding the read models into a scratch key space and diffing it with the live one.

1. Resolve the live generation (the active pointer), read its sentinel (is it complete?)
   and checkpoint (the last offset it applied per ``topic:partition``).
2. Replay the logs into a fresh scratch namespace up to that checkpoint with the code every
   rebuild uses (``ledgerflow.projections.parallel``: batches folded in memory, in worker
   processes, so this process checks the logs meanwhile).
3. Read both spaces (SCAN, then one script call per ~500 keys, an entity's keys and its fence
   always in the same call) as a digest per key and a fence per entity; compare entity by
   entity (``digests.compare_entity``). The live space must be read after the checkpoint is
   visible with every write before it: on one Redis the projector's pipeline runs its checkpoint
   call after the batch's entity calls, so the live space is read while step 2 runs; on a
   Redis Cluster the calls of a batch run on the masters in parallel and the checkpoint can
   land a moment before an entity's write on another master, so the live space is read after
   step 2 (seconds later). The scratch space is read as soon as step 2 is done, beside the
   live read and the log checks that may still run (not after them).
4. Entities the live projection moved on with while we read: catch the scratch space up
   to the new checkpoint (the fenced replay, from the scratch checkpoint on) and compare
   them again (at most ``ROUNDS`` times).
5. Delete the scratch space, whatever happened.

A SIGKILL runs no step 5. So the scratch space is leased as a rebuild's generation is
(``projections/abandoned.py``): before its first key, the audit sets a replay token that lives
``LEDGERFLOW_REBUILD_LEASE_S`` seconds and refreshes it meanwhile, and marks the space as leased;
then it removes every other marked scratch space whose token is gone (``sweep_spaces``), never one
of an audit still running. Its own space is trusted only while its token lives: checked after
each read of it (a space swept while this audit stalled past its lease is an error, not findings).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable
from typing import Any, TypeVar

import redis.asyncio as aioredis
from aiokafka import TopicPartition
from redis.crc import key_slot
from redis.exceptions import RedisError

from ledgerflow.audit import digests
from ledgerflow.audit.digests import Divergence, Snapshot, snapshot
from ledgerflow.audit.logchecks import ProgressFactory
from ledgerflow.audit.report import Finding, Report
from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.projections.abandoned import LEASED, drop_space, keep_alive, lease_from_env, sweep_spaces
from ledgerflow.projections.conversations import SOURCES
from ledgerflow.projections.generations import PROJECTION, active_keys
from ledgerflow.projections.guards import guard_complete, set_guard
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.parallel import processes_from_env, replay_parallel
from ledgerflow.projections.rebuild import replay
from ledgerflow.redisclient import async_client, is_cluster_client
from ledgerflow.redisvalues import int_map

A = TypeVar("A")
B = TypeVar("B")
T = TypeVar("T")

CHECKPOINT = PROJECTION  # the projector's checkpoint name
ROUNDS = 3
SCRATCH_BASE = "lf:audit:"  # each audit's scratch space is ``lf:audit:<id>:``
SCAN_COUNT = 1000
READ_BATCH = 500

# KEYS: the keys to read. Returns per key {type, content}: content as HGETALL / LRANGE /
# SMEMBERS / ZRANGE WITHSCORES / GET return it (false for a type not compared, or a key gone).
_READ = """
local out = {}
for i, key in ipairs(KEYS) do
  local kind = redis.call('TYPE', key).ok
  local content = false
  if kind == 'hash' then content = redis.call('HGETALL', key)
  elseif kind == 'list' then content = redis.call('LRANGE', key, 0, -1)
  elseif kind == 'set' then content = redis.call('SMEMBERS', key)
  elseif kind == 'zset' then content = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  elseif kind == 'string' then content = redis.call('GET', key)
  end
  out[i] = {kind, content}
end
return out
"""


def _as_read(kind: str, content: Any) -> Any:
    """``content`` as redis-py's command of that kind returns it (what ``snapshot`` takes)."""
    if kind == "hash":
        return dict(zip(content[::2], content[1::2], strict=True))
    if kind == "zset":
        return list(zip(content[::2], (float(score) for score in content[1::2]), strict=True))
    return content


class _Space:
    """One namespace as digests per entity and key, and fences per entity."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.redis, self.keys = redis, keys
        self._read_script = redis.register_script(_READ)
        self.digests: dict[str, dict[str, str]] = {}
        self.fences: dict[str, dict[str, int]] = {}
        self._unlisted: set[str] = set()  # fences read though the listing did not return them

    async def load(self) -> None:
        """Every key of the space, an entity's keys and its fence read by one script call.

        The live projection keeps writing while we read (a usage window the wall clock closes,
        a late turn). It writes an entity's keys and fence in one script call, so reading them
        together sees the entity before or after that write, never half of it: a fence read
        before the write beside content read after it would be reported as a divergence. Keys
        are listed first (SCAN), then read entity by entity, each with its fence even if the listing
        missed it; a key created after the listing comes with a newer fence, which the comparison
        takes as "moved on" (next round)."""
        self.digests, self.fences, self._unlisted = {}, {}, set()
        ns = self.keys.namespace
        by_entity: dict[str, list[tuple[str, bytes | str]]] = {}  # entity -> (name, name as sent)
        async for raw in self.redis.scan_iter(match=_glob_escape(ns) + "*", count=SCAN_COUNT):
            name = digests.key_text(raw)
            by_entity.setdefault(digests.entity_of(name[len(ns) :]), []).append((name, raw))
        for entity, names in by_entity.items():
            # SCAN may leave out a key created while it runs: an entity the projector created during
            # the listing can come with its content and without its fence, which read as "no fence"
            # beside a rebuild without the entity looked like content no record wrote. Read it anyway.
            fence = ns + digests.fence_of(entity)
            listed = any(name == fence for name, _ in names)
            if not listed and any(not digests.is_bookkeeping(name[len(ns) :]) for name, _ in names):
                names.append((fence, fence.encode("utf-8", "surrogateescape")))
                self._unlisted.add(fence)
        batch: list[tuple[str, str, bytes | str]] = []  # (entity, key, key as sent)
        for entity, names in by_entity.items():  # a batch may pass READ_BATCH: it never splits an entity
            batch.extend((entity, name, raw) for name, raw in names)
            if len(batch) >= READ_BATCH:
                await self._read(batch)
                batch = []
        if batch:
            await self._read(batch)

    async def _read(self, batch: list[tuple[str, str, bytes | str]]) -> None:
        ns = len(self.keys.namespace)
        replies = await self._replies([raw for _, _, raw in batch])
        for (entity, name, _), (kind, flat) in zip(batch, replies, strict=True):
            relative = name[ns:]
            if relative.endswith(digests.FENCE_SUFFIX):
                if kind != "none" or name not in self._unlisted:  # one not listed counts if it exists
                    self.fences[entity] = digests.fence_of_reply(kind, flat)
            elif not digests.is_bookkeeping(relative):
                self.digests.setdefault(entity, {})[relative] = digests.reply_digest(kind, flat)

    async def snapshots(self, names: list[bytes | str]) -> list[Snapshot]:
        """Each key's snapshot: its content decoded, in canonical order (to describe a divergence)."""
        return [
            snapshot(kind, None if flat is None else _as_read(kind, flat))
            for kind, flat in await self._replies(names)
        ]

    async def _replies(self, names: list[bytes | str]) -> list[tuple[str, Any]]:
        """Each key's type and content as the script returns it (flat), read by one script call
        (a type and a read per key as separate commands cost more in redis-py's packing and
        parsing than the digests themselves)."""
        if not names:
            found = []
        elif is_cluster_client(self.redis):
            found = await self._per_slot(names)
        else:
            found = await self._read_script(keys=names)
        return [(kind.decode() if isinstance(kind, bytes) else kind, flat) for kind, flat in found]

    async def _per_slot(self, names: list[bytes | str]) -> list[Any]:
        """On a Redis Cluster a script call reads the keys of one slot: one call per slot, all in
        one pipeline (split per master by the client), replies put back in ``names``' order."""
        groups: dict[int, list[int]] = {}
        for i, name in enumerate(names):
            groups.setdefault(key_slot(name if isinstance(name, bytes) else name.encode()), []).append(i)
        sha = await self.redis.script_load(_READ)  # on every master
        pipe = self.redis.pipeline(transaction=False)
        for indexes in groups.values():
            pipe.execute_command("EVALSHA", sha, len(indexes), *(names[i] for i in indexes))
        found: list[Any] = [None] * len(names)
        for indexes, replies in zip(groups.values(), await pipe.execute(), strict=True):
            for i, reply in zip(indexes, replies, strict=True):
                found[i] = reply
        return found

    async def one(self, relative: str) -> Snapshot | None:
        name = (self.keys.namespace + relative).encode("utf-8", "surrogateescape")  # as ``key_text`` read it
        snap = (await self.snapshots([name]))[0]
        return None if snap.kind == "none" else snap


async def audit_projections(
    settings: Settings,
    report: Report,
    progress: ProgressFactory,
    *,
    rounds: int = ROUNDS,
) -> None:
    own = uuid.uuid4().hex[:12]
    scratch_keys = Keys(f"{SCRATCH_BASE}{own}:")
    token = scratch_keys.replay_guard(uuid.uuid4().hex)
    redis = async_client(settings.redis_url, socket_timeout=30, socket_connect_timeout=5)
    beat: asyncio.Task[None] | None = None
    try:
        lease = lease_from_env()
        await set_guard(redis, token, str(time.time()), ex=lease)  # before the space's first key
        await redis.set(scratch_keys.namespace + LEASED, str(lease))
        beat = asyncio.create_task(keep_alive(redis, token, lease))
        swept = await sweep_spaces(
            redis, SCRATCH_BASE, own, marked=True, what="audit: removed the scratch space of a killed audit"
        )
        if swept:
            report.notes.append(
                f"removed the scratch space of {len(swept)} audit(s) killed earlier (their lease ran out): "
                + ", ".join(f"{SCRATCH_BASE}{space}:" for space in swept)
            )
        live_keys = await active_keys(redis, settings.topic_prefix)  # the generation readers use
        await _run(settings, redis, live_keys, scratch_keys, report, progress, rounds, token)
    except (RedisError, OSError) as exc:
        raise InfrastructureError(
            f"Redis at {settings.redis_url} failed during the read-model audit ({exc!r}): check it runs "
            "(`ledgerflow stack status`), or rerun with --skip-projections"
        ) from None
    finally:
        if beat is not None:
            beat.cancel()
        try:
            await drop_space(redis, scratch_keys)  # Step 5.
        except (RedisError, OSError):
            pass  # Redis failed: the error above says so; a second one from clean-up would bury it
        finally:
            await redis.aclose()
    report.checks.append("read models")


async def _run(
    settings: Settings,
    redis: aioredis.Redis,
    live_keys: Keys,
    scratch_keys: Keys,
    report: Report,
    progress: ProgressFactory,
    rounds: int,
    token: str | None = None,
) -> None:
    """Steps 1-4; ``token``: the scratch space's lease, checked after each read of the space."""
    # Step 1.
    if not await guard_complete(redis, live_keys.sentinel()):
        report.add(
            Finding(
                "projection.incomplete",
                live_keys.namespace,
                None,
                None,
                live_keys.sentinel(),
                "the live read models are not complete (never built, or Redis lost its data and the "
                "projector has not replayed yet): start `ledgerflow worker` and audit again",
            )
        )
        return
    live, scratch = _Space(redis, live_keys), _Space(redis, scratch_keys)
    pending: set[str] | None = None  # None: every entity
    for round_no in range(1, rounds + 1):
        until = await _checkpoint(settings, redis, live_keys)
        with progress(f"rebuilding read models (round {round_no})", sum(until.values())) as update:
            if round_no == 1:  # Step 2: in worker processes, while this one checks the logs
                workers = max(processes_from_env() - 1, 1)
                replaying = replay_parallel(
                    settings, redis, scratch_keys, until, update, processes=workers, spawn=True
                )
            else:  # Step 4: the fold wrote fences, so the fenced replay reads on from the checkpoint
                start = {
                    cursor: offset + 1
                    for cursor, offset in int_map(
                        await redis.hgetall(scratch_keys.checkpoint(CHECKPOINT))
                    ).items()
                }
                replaying = replay(settings, redis, scratch_keys, until, update, start=start)
            rebuilt = _then_read(replaying, scratch)  # Step 3 for the scratch space once it is rebuilt
            if is_cluster_client(redis):  # Step 3 for the live space after it (see the module doc)
                stats = await rebuilt
                await live.load()
            else:  # Step 3 for the live space meanwhile
                stats, _ = await run_both(rebuilt, live.load())
        if token is not None and not await guard_complete(redis, token):
            raise InfrastructureError(
                f"the audit's scratch space {scratch_keys.namespace} lost its lease while the audit ran "
                "(stalled past LEDGERFLOW_REBUILD_LEASE_S, and another audit removed it, or Redis lost "
                "its data): nothing compared, audit again"
            )
        report.count("read-model records replayed", stats.records if round_no == 1 else 0)
        pending = await _compare(live, scratch, report, pending)
        if not pending:
            break
    if pending:  # Step 4 ran out of rounds.
        report.notes.append(
            f"{len(pending)} read-model entities kept changing while audited and were not "
            "compared: audit again when traffic is quiet"
        )


async def _then_read(replaying: Awaitable[T], scratch: _Space) -> T:
    """The replay's result, the scratch space read right after it: on one Redis while the
    live space is still being read, and this process still checks the logs (both share its
    event loop), instead of after both."""
    stats = await replaying
    await scratch.load()
    return stats


async def run_both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Both results; if either raises, the other is cancelled and waited for before the error
    (the first one, not an ExceptionGroup) propagates, so nothing — a rebuild's worker
    processes — goes on writing into a scratch space the caller then deletes."""
    try:
        async with asyncio.TaskGroup() as group:
            a, b = group.create_task(_awaited(first)), group.create_task(_awaited(second))
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None
    return a.result(), b.result()


async def _awaited(awaitable: Awaitable[T]) -> T:
    return await awaitable


async def _compare(live: _Space, scratch: _Space, report: Report, only: set[str] | None) -> set[str]:
    moved_on: set[str] = set()
    entities = set(live.digests) | set(scratch.digests) | set(live.fences) | set(scratch.fences)
    if only is not None:
        entities &= only
    compared = 0
    for entity in sorted(entities):
        result = digests.compare_entity(
            entity,
            live.digests.get(entity, {}),
            scratch.digests.get(entity, {}),
            live.fences.get(entity, {}),
            scratch.fences.get(entity, {}),
        )
        if result.moved_on:
            moved_on.add(entity)
            continue
        compared += 1
        fence = live.fences.get(entity) or scratch.fences.get(entity, {})
        for divergence in result.divergences:
            report.add(await _finding(live, scratch, divergence, fence))
    report.count("read-model entities compared", compared)
    return moved_on


async def _finding(live: _Space, scratch: _Space, divergence: Divergence, fence: dict[str, int]) -> Finding:
    detail, cursor, offset = divergence.detail, divergence.cursor, divergence.offset
    if not detail:  # both spaces hold the key: read the two values to say what differs
        ours, theirs = await live.one(divergence.key), await scratch.one(divergence.key)
        detail = digests.describe(ours, theirs)
        cursor, offset = digests.record_of(divergence.key, fence, digests.differing_fields(ours, theirs))
    key = live.keys.namespace + divergence.key
    if cursor is None:
        return Finding("projection.diff", "redis", None, None, key, detail)
    topic, _, partition = cursor.rpartition(":")
    if divergence.kind == "fence":
        return Finding("projection.lost", topic, int(partition), offset, key, detail)
    return Finding(
        "projection.diff",
        topic,
        int(partition),
        offset,
        key,
        f"{detail} (the offset is the last record of {topic} applied to this entity)",
    )


async def _checkpoint(settings: Settings, redis: aioredis.Redis, keys: Keys) -> dict[TopicPartition, int]:
    """The live checkpoint as replay bounds: one past the last applied offset per partition
    (of the topics ``replay`` projects)."""
    sources = {settings.topic(base) for base in SOURCES}
    raw = await redis.hgetall(keys.checkpoint(CHECKPOINT))
    until = {}
    for cursor, offset in int_map(raw).items():
        topic, _, partition = cursor.rpartition(":")
        if topic in sources:
            until[TopicPartition(topic, int(partition))] = offset + 1
    return until


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
