"""Folding batches of fenced op groups into final per-key writes for a fresh key space (pure).

A replay into a key space nobody else writes (a rebuild's new generation, the auditor's
scratch copy) does not need Redis to check fences, dedupe ids and chain links record by
record: the replay is the only writer, so it can keep that state in memory and send Redis
only each batch's net effect — one HSET / HINCRBY / RPUSH / ZADD / ZREM per key per batch.

``Fold.batch`` applies the writer's semantics (``writer.py``'s Lua script, mirrored by
``model.MemorySpace``) group by group, in order: fence, ``Once``, ``ChainLink``, ops, fence
move. What it must remember across batches it keeps (``Fold`` is one replay's state):
the fences, the ids counted per dedupe key, each chain's head, and every sorted set (a
rank trim needs the whole set). What Redis must receive it returns as ``Writes``. Applying
the ``Writes`` of every batch to an empty space gives exactly the space that applying the
same groups one by one through the fenced writer gives (a property test checks it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledgerflow.contracts.chain import ZERO_HASH
from ledgerflow.projections.keys import FENCE_SUFFIX
from ledgerflow.projections.ops import ChainLink, FencedOps, RedisOp


@dataclass
class Writes:
    """One batch's net effect per key. A hash field is either set or incremented, a sorted-set
    member either added (with its score as written) or removed: never both."""

    hset: dict[str, dict[str, str]] = field(default_factory=dict)
    hincrby: dict[str, dict[str, int]] = field(default_factory=dict)
    rpush: dict[str, list[str]] = field(default_factory=dict)
    zadd: dict[str, dict[str, str]] = field(default_factory=dict)
    zrem: dict[str, set[str]] = field(default_factory=dict)

    def keys(self) -> set[str]:
        return {*self.hset, *self.hincrby, *self.rpush, *self.zadd, *self.zrem}


@dataclass
class FoldStats:
    applied: int = 0
    skipped: int = 0  # groups not applied: fenced, deduplicated or refused
    deduped: int = 0
    refused: int = 0


@dataclass
class Fold:
    """One replay's in-memory state (see the module doc)."""

    fences: dict[str, dict[str, int]] = field(default_factory=dict)
    seen: dict[str, set[str]] = field(default_factory=dict)
    heads: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict)
    zsets: dict[str, dict[str, float]] = field(default_factory=dict)
    trims: dict[str, tuple[int, int]] = field(default_factory=dict)
    """The last rank trim (start, stop) of each sorted set (a parallel rebuild trims again after merging)."""

    def batch(self, groups: Iterable[FencedOps], stats: FoldStats | None = None) -> Writes:
        """Fold ``groups`` (in log order) onto the state; return what Redis must receive."""
        out = _Batch(self, Writes())
        stats = stats if stats is not None else FoldStats()
        for group in groups:
            out.group(group, stats)
        return out.writes


class _Batch:
    def __init__(self, fold: Fold, writes: Writes) -> None:
        self.fold, self.writes = fold, writes

    def group(self, group: FencedOps, stats: FoldStats) -> None:
        fold = self.fold
        cursor, offset = group.position.cursor, group.position.offset
        fence = fold.fences.setdefault(group.fence_key, {})
        if offset <= fence.get(cursor, -1):
            stats.skipped += 1
            return
        at = f"{cursor}@{offset}"
        ok = True
        if group.once is not None:
            seen = fold.seen.setdefault(group.once.key, set())
            if group.once.member in seen:
                ok = False
                stats.deduped += 1
            else:
                seen.add(group.once.member)
                self.hset(group.once.key, group.once.member, at)
        if ok and group.link is not None:
            why = self.link(group.link)
            self.hset(group.link.head_key + FENCE_SUFFIX, cursor, str(offset))
            if why is not None:
                ok = False
                stats.refused += 1
                self.hset(group.link.quarantine_key, at, why)
        if ok:
            for op in group.ops:
                self.op(op)
            stats.applied += 1
        else:
            stats.skipped += 1
        fence[cursor] = offset
        self.hset(group.fence_key, cursor, str(offset))

    def link(self, link: ChainLink) -> str | None:
        """Why the chained record does not link to its chain's head (None: it links)."""
        heads = self.fold.heads.setdefault(link.head_key, {})
        head = heads.get(link.copy)
        if head is None:
            why = None if link.sequence == 1 and link.prev_hash == ZERO_HASH else "bad-genesis"
        elif link.sequence == head[0] + 1 and link.prev_hash == head[1]:
            why = None
        elif link.sequence == head[0] and link.hash == head[1]:
            why = "duplicate"
        else:
            why = "broken-link"
        if why is None:
            heads[link.copy] = (link.sequence, link.hash)
            self.hset(link.head_key, link.copy, f"{link.sequence} {link.hash}")
        return why

    def op(self, op: RedisOp) -> None:
        args = [a if isinstance(a, str) else str(a) for a in op.args]
        if op.command == "HSET":
            for name, value in zip(args[::2], args[1::2], strict=True):
                self.hset(op.key, name, value)
        elif op.command == "HINCRBY":
            self.hincrby(op.key, args[0], int(args[1]))
        elif op.command == "RPUSH":
            self.writes.rpush.setdefault(op.key, []).extend(args)
        elif op.command == "ZADD":
            self.zadd(op.key, args[1], args[0])
        elif op.command == "ZREMRANGEBYRANK":
            self.zremrangebyrank(op.key, int(args[0]), int(args[1]))
        else:
            raise NotImplementedError(f"the fold has no {op.command}: project() does not emit it")

    def hset(self, key: str, name: str, value: str) -> None:
        counters = self.writes.hincrby.get(key)
        if counters is not None:
            counters.pop(name, None)  # a later HSET replaces whatever the increments made
        self.writes.hset.setdefault(key, {})[name] = value

    def hincrby(self, key: str, name: str, by: int) -> None:
        values = self.writes.hset.get(key)
        if values is not None and name in values:  # set earlier in this batch: increment that value
            values[name] = str(int(values[name]) + by)
            return
        counters = self.writes.hincrby.setdefault(key, {})
        counters[name] = counters.get(name, 0) + by

    def zadd(self, key: str, member: str, score: str) -> None:
        self.fold.zsets.setdefault(key, {})[member] = float(score)
        self.writes.zadd.setdefault(key, {})[member] = score
        self.writes.zrem.get(key, set()).discard(member)

    def zremrangebyrank(self, key: str, start: int, stop: int) -> None:
        self.fold.trims[key] = (start, stop)
        zset = self.fold.zsets.setdefault(key, {})
        ranked = sorted(zset.items(), key=lambda kv: (kv[1], kv[0]))
        for member, _ in ranked[ranks(len(ranked), start, stop)]:
            del zset[member]
            self.writes.zadd.get(key, {}).pop(member, None)
            self.writes.zrem.setdefault(key, set()).add(member)


def ranks(n: int, start: int, stop: int) -> slice:
    """The members ZREMRANGEBYRANK ``start`` ``stop`` removes from a sorted set of ``n``, as
    Redis reads the range: negative ranks count from the end, an empty range removes nothing
    (a Python slice would read a stop still negative after that as counting from the end)."""
    start, stop = (start + n if start < 0 else start), (stop + n if stop < 0 else stop)
    start, stop = max(start, 0), min(stop, n - 1)
    return slice(start, stop + 1) if start <= stop else slice(0, 0)


def apply_writes(data: dict[str, Any], writes: Writes) -> None:
    """What Redis does with ``writes``, on ``model.MemorySpace.data`` (for tests)."""
    for key, values in writes.hset.items():
        data.setdefault(key, {}).update(values)
    for key, counters in writes.hincrby.items():
        h = data.setdefault(key, {})
        for name, by in counters.items():
            h[name] = str(int(h.get(name, "0")) + by)
    for key, items in writes.rpush.items():
        data.setdefault(key, []).extend(items)
    for key, members in writes.zadd.items():
        zset = data.setdefault(key, {})
        for member, score in members.items():
            zset[member] = float(score)
    for key, gone in writes.zrem.items():
        for member in gone:
            data.get(key, {}).pop(member, None)
