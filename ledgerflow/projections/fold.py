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

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledgerflow.contracts.chain import ZERO_HASH
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import MessageSubmitted, PolicyDecision
from ledgerflow.projections.conversations import RECENT_DENIALS, decision_entry, project, turn_entry
from ledgerflow.projections.keys import FENCE_SUFFIX, Keys
from ledgerflow.projections.ops import ChainLink, FencedOps, Position, RedisOp


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
    names: _Names = field(default_factory=lambda: _Names(Keys()))
    """Key names per conversation and tenant, made once per replay (one space, one ``Keys``)."""

    def batch(self, groups: Iterable[FencedOps], stats: FoldStats | None = None) -> Writes:
        """Fold ``groups`` (in log order) onto the state; return what Redis must receive."""
        out = _Batch(self, Writes())
        stats = stats if stats is not None else FoldStats()
        for group in groups:
            out.group(group, stats)
        return out.close()

    def records(
        self, items: Iterable[tuple[Event, Position]], keys: Keys, stats: FoldStats | None = None
    ) -> Writes:
        """``batch`` of the groups ``project`` gives for each record (in log order). Turns and
        chained decisions, nearly all of a log, are folded straight from the record with the
        same writes, without building their op groups (a third of a rebuild's time)."""
        out = _Batch(self, Writes())
        stats = stats if stats is not None else FoldStats()
        if self.names.keys != keys:
            self.names = _Names(keys)
        for event, position in items:
            payload = event.payload
            if type(payload) is MessageSubmitted:
                out.turn(event, payload, position.cursor, position.offset, keys, stats)
            elif type(payload) is PolicyDecision and (link := _chained(event, payload, keys)) is not None:
                out.decision(event, payload, link, position.cursor, position.offset, keys, stats)
            else:
                for group in project(event, position, keys):
                    out.group(group, stats)
        return out.close()


class _Names:
    """``Keys``' names of each conversation's and tenant's keys, computed once each."""

    def __init__(self, keys: Keys) -> None:
        self.keys = keys
        self.conversations: dict[tuple[str, str], tuple[str, str, str, str, str]] = {}
        self.tenants: dict[str, tuple[str, str, str, str, str]] = {}

    def conversation(self, tenant: str, conv: str) -> tuple[str, str, str, str, str]:
        """(hash, turns, decisions, fence, seen) of a conversation."""
        names = self.conversations.get((tenant, conv))
        if names is None:
            k = self.keys
            names = self.conversations[tenant, conv] = (
                k.conversation(tenant, conv),
                k.conversation_turns(tenant, conv),
                k.conversation_decisions(tenant, conv),
                k.conversation_fence(tenant, conv),
                k.conversation_seen(tenant, conv),
            )
        return names

    def tenant(self, tenant: str) -> tuple[str, str, str, str, str]:
        """(hash, conversations, denials, fence, seen) of a tenant."""
        names = self.tenants.get(tenant)
        if names is None:
            k = self.keys
            names = self.tenants[tenant] = (
                k.tenant(tenant),
                k.tenant_conversations(tenant),
                k.tenant_denials(tenant),
                k.tenant_fence(tenant),
                k.tenant_seen(tenant),
            )
        return names


class _Batch:
    def __init__(self, fold: Fold, writes: Writes) -> None:
        self.fold, self.writes = fold, writes
        # Fences and chain heads move with nearly every group but only their last value per
        # batch reaches Redis: written once, at ``close``.
        self.moved: dict[str, dict[str, int]] = {}
        self.linked: dict[str, set[str]] = {}

    def close(self) -> Writes:
        for key, offsets in self.moved.items():
            for cursor, offset in offsets.items():
                self.hset(key, cursor, str(offset))
        for key, copies in self.linked.items():
            heads = self.fold.heads[key]
            for copy in copies:
                sequence, hash_ = heads[copy]
                self.hset(key, copy, f"{sequence} {hash_}")
        return self.writes

    def group(self, group: FencedOps, stats: FoldStats) -> None:
        cursor, offset = group.position.cursor, group.position.offset
        once = group.once
        admitted = self.admit(
            group.fence_key,
            cursor,
            offset,
            once.key if once else None,
            once.member if once else "",
            group.link,
            stats,
        )
        if admitted:
            for op in group.ops:
                self.op(op)
        if admitted is not None:
            self.settle(group.fence_key, cursor, offset, admitted, stats)

    def admit(
        self,
        fence_key: str,
        cursor: str,
        offset: int,
        once_key: str | None,
        member: str,
        link: ChainLink | None,
        stats: FoldStats,
    ) -> bool | None:
        """The writer's checks of one group before its ops: None if fenced (nothing happens),
        else whether the ops apply (the ``Once`` id is new and the chain links)."""
        if offset <= self.fold.fences.get(fence_key, {}).get(cursor, -1):
            stats.skipped += 1
            return None
        seen = None
        if once_key is not None:
            seen = self.fold.seen.get(once_key)
            if seen is None:
                seen = self.fold.seen[once_key] = set()
            if member in seen:
                stats.deduped += 1
                return False
        if link is not None:
            why = self.link(link)
            self.move(link.head_key + FENCE_SUFFIX, cursor, offset)
            if why is not None:
                stats.refused += 1
                self.hset(link.quarantine_key, f"{cursor}@{offset}", why)
                return False
        if once_key is not None and seen is not None:  # claimed only by a record applied (writer.py)
            seen.add(member)
            self.hset(once_key, member, f"{cursor}@{offset}")
        return True

    def settle(self, fence_key: str, cursor: str, offset: int, applied: bool, stats: FoldStats) -> None:
        """After a group's ops (if any applied): count it and move its fence."""
        if applied:
            stats.applied += 1
        else:
            stats.skipped += 1
        self.fold.fences.setdefault(fence_key, {})[cursor] = offset
        self.move(fence_key, cursor, offset)

    def move(self, key: str, cursor: str, offset: int) -> None:
        """Field ``cursor`` of the fence ``key`` is ``offset`` now (written at ``close``)."""
        moved = self.moved.get(key)
        if moved is None:
            moved = self.moved[key] = {}
        moved[cursor] = offset

    def turn(
        self, event: Event, payload: MessageSubmitted, cursor: str, offset: int, keys: Keys, stats: FoldStats
    ) -> None:
        """``project``'s two groups of a turn (conversation, tenant), folded."""
        tenant, conv, at = event.tenant, event.subject, str(event.occurred_at)
        member, tokens = f"e:{event.event_id}", payload.tokens or 0
        key, turns, _, fence, seen = self.fold.names.conversation(tenant, conv)
        admitted = self.admit(fence, cursor, offset, seen, member, None, stats)
        if admitted:
            touched = {
                "tenant": tenant,
                "conversation_id": conv,
                "updated_at": at,
                "last_event_id": event.event_id,
            }
            self.hset_all(key, touched)
            self.hincrby(key, "turns", 1)
            self.hincrby(key, "tokens", tokens)
            self.writes.rpush.setdefault(turns, []).append(turn_entry(event, payload))
        if admitted is not None:
            self.settle(fence, cursor, offset, admitted, stats)
        key, index, _, fence, seen = self.fold.names.tenant(tenant)
        admitted = self.admit(fence, cursor, offset, seen, member, None, stats)
        if admitted:
            self.hincrby(key, "turns", 1)
            self.hincrby(key, "tokens", tokens)
            self.zadd(index, conv, at)
        if admitted is not None:
            self.settle(fence, cursor, offset, admitted, stats)

    def decision(
        self,
        event: Event,
        payload: PolicyDecision,
        link: ChainLink,
        cursor: str,
        offset: int,
        keys: Keys,
        stats: FoldStats,
    ) -> None:
        """``project``'s two groups of a chained decision (conversation, tenant), folded;
        ``link`` is the conversation group's chain condition (``_chained``)."""
        tenant, conv = event.tenant, payload.conversation_id
        member, entry = f"d:{conv}/{payload.input_event_id}", decision_entry(event, payload)
        key, _, decisions, fence, seen = self.fold.names.conversation(tenant, conv)
        admitted = self.admit(fence, cursor, offset, seen, member, link, stats)
        if admitted:
            self.hset(key, "last_decision", entry)
            self.hset(decisions, payload.input_event_id, entry)
        if admitted is not None:
            self.settle(fence, cursor, offset, admitted, stats)
        key, _, denials, fence, seen = self.fold.names.tenant(tenant)
        # the tenant group's copy of the chain lives in the tenant's slot (``project``'s ``_link``)
        tenant_link = dataclasses.replace(
            link,
            head_key=keys.tenant_chain(tenant, event.subject),
            copy="tenant",
            quarantine_key=keys.tenant_chain_quarantine(tenant, event.subject),
        )
        admitted = self.admit(fence, cursor, offset, seen, member, tenant_link, stats)
        if admitted:
            self.hincrby(key, f"decisions_{payload.outcome}", 1)
            if payload.outcome == "deny":
                self.zadd(denials, entry, str(event.occurred_at))
                self.zremrangebyrank(denials, 0, -RECENT_DENIALS - 1)
        if admitted is not None:
            self.settle(fence, cursor, offset, admitted, stats)

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
            self.linked.setdefault(link.head_key, set()).add(link.copy)
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

    def hset_all(self, key: str, values: dict[str, str]) -> None:
        """``hset`` of every field of ``values``."""
        counters = self.writes.hincrby.get(key)
        if counters is not None:
            for name in values:
                counters.pop(name, None)
        hashed = self.writes.hset.get(key)
        if hashed is None:
            self.writes.hset[key] = values
        else:
            hashed.update(values)

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


def _chained(event: Event, payload: PolicyDecision, keys: Keys) -> ChainLink | None:
    """The conversation group's chain condition of a decision with chain fields (as ``project``'s)."""
    if event.sequence is None or event.prev_hash is None or event.hash is None:
        return None
    quarantine = keys.conversation_quarantine(event.tenant, payload.conversation_id)
    chain = keys.decision_chain(event.tenant, event.subject)
    return ChainLink(chain, "conversation", event.sequence, event.prev_hash, event.hash, quarantine)


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
