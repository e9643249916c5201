"""The pure decisions of the hot path's batch loop (``agents/batchloop.py``): which handler
gets which records of a fetched batch, and which offsets may be committed once they were handled."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Partition = tuple[str, int]  # (topic, partition)
Handler = Callable[[list[Any]], Coroutine[Any, Any, None]]


@dataclass(frozen=True, slots=True)
class Route:
    """An agent of the hot path: the topics (full names) it handles and its batch handler."""

    name: str
    topics: frozenset[str]
    handle: Handler


def split(fetched: Mapping[Any, Sequence[Any]], routes: Sequence[Route]) -> list[tuple[Route, list[Any]]]:
    """Each route's records of a fetched batch, in partition order and offset order within a
    partition (a record goes to every route that handles its topic); routes with none are left out."""
    out: list[tuple[Route, list[Any]]] = []
    for route in routes:
        mine = [r for records in fetched.values() for r in records if r.topic in route.topics]
        if mine:
            out.append((route, mine))
    return out


def next_offsets(fetched: Mapping[Any, Sequence[Any]]) -> dict[Partition, int]:
    """Per partition, the offset to commit once every record fetched was handled: the last + 1."""
    out: dict[Partition, int] = {}
    for records in fetched.values():
        for r in records:
            key = (r.topic, r.partition)
            out[key] = max(out.get(key, 0), r.offset + 1)
    return out


def advance(pending: dict[Partition, int], handled: Mapping[Partition, int]) -> None:
    """Fold ``handled`` into ``pending``: a committed offset only ever moves forward."""
    for key, offset in handled.items():
        if offset > pending.get(key, -1):
            pending[key] = offset


def without(pending: Mapping[Partition, int], gone: Iterable[Partition]) -> dict[Partition, int]:
    """``pending`` minus the partitions this member no longer owns (their new owner commits them)."""
    drop = set(gone)
    return {k: v for k, v in pending.items() if k not in drop}
