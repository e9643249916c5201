"""The writer's semantics in memory (pure): what applying fenced op groups does to a key space.

``MemorySpace.apply`` mirrors the Lua script of ``writer.py`` record by record — guard,
fence, ``Once``, ``ChainLink``, ops, fence move — so the conditions can be unit-tested
without Redis, and an integration test checks that Redis ends in the same state.
Values are kept as Redis returns them to a reader: hashes of strings, lists, sorted sets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledgerflow.contracts.chain import ZERO_HASH
from ledgerflow.projections.fold import ranks
from ledgerflow.projections.keys import FENCE_SUFFIX
from ledgerflow.projections.ops import ChainLink, FencedOps, RedisOp
from ledgerflow.projections.writer import Refusal


@dataclass
class MemoryResult:
    applied: int = 0
    deduped: int = 0
    refused: list[Refusal] = field(default_factory=list)
    lost: bool = False


@dataclass
class MemorySpace:
    data: dict[str, Any] = field(default_factory=dict)

    def apply(self, batch: list[FencedOps], guard: str | None = None) -> MemoryResult:
        result = MemoryResult()
        if guard is not None and guard not in self.data:
            result.lost = True
            return result
        for group in batch:
            self._record(group, result)
        return result

    def _hash(self, key: str) -> dict[str, str]:
        return self.data.setdefault(key, {})  # type: ignore[no-any-return]

    def _record(self, group: FencedOps, result: MemoryResult) -> None:
        cursor, offset = group.position.cursor, group.position.offset
        fence = self._hash(group.fence_key)
        if offset <= int(fence.get(cursor, "-1")):
            return
        at = f"{cursor}@{offset}"
        ok = True
        if group.once is not None and group.once.member in self.data.get(group.once.key, {}):
            ok = False
            result.deduped += 1
        if ok and group.link is not None:
            why = self._link(group.link)
            self._hash(group.link.head_key + FENCE_SUFFIX)[cursor] = str(offset)
            if why is not None:
                ok = False
                self._hash(group.link.quarantine_key)[at] = why
                result.refused.append(Refusal(cursor, offset, why))
        if ok and group.once is not None:  # claimed only by a record applied (writer.py)
            self._hash(group.once.key)[group.once.member] = at
        if ok:
            for op in group.ops:
                self._op(op)
            result.applied += 1
        fence[cursor] = str(offset)

    def _link(self, link: ChainLink) -> str | None:
        head = self.data.get(link.head_key, {}).get(link.copy)
        why: str | None = None
        if head is not None:
            seq, digest = head.split(" ")
            if link.sequence == int(seq) + 1 and link.prev_hash == digest:
                why = None
            elif link.sequence == int(seq) and link.hash == digest:
                why = "duplicate"
            else:
                why = "broken-link"
        elif not (link.sequence == 1 and link.prev_hash == ZERO_HASH):
            why = "bad-genesis"
        if why is None:
            self._hash(link.head_key)[link.copy] = f"{link.sequence} {link.hash}"
        return why

    def _op(self, op: RedisOp) -> None:
        args = [str(a) for a in op.args]
        if op.command == "HSET":
            self._hash(op.key).update(zip(args[::2], args[1::2], strict=True))
        elif op.command == "HINCRBY":
            h = self._hash(op.key)
            h[args[0]] = str(int(h.get(args[0], "0")) + int(args[1]))
        elif op.command == "RPUSH":
            self.data.setdefault(op.key, []).extend(args)
        elif op.command == "ZADD":
            zset: dict[str, float] = self.data.setdefault(op.key, {})
            zset[args[1]] = float(args[0])
        elif op.command == "ZREMRANGEBYRANK":
            zset = self.data.setdefault(op.key, {})
            ranked = sorted(zset.items(), key=lambda kv: (kv[1], kv[0]))
            for member, _ in ranked[ranks(len(ranked), int(args[0]), int(args[1]))]:
                del zset[member]
        else:
            raise NotImplementedError(f"the memory model has no {op.command}")
