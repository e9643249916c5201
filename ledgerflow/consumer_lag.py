"""Consumer lag: how far a consumer group's committed offsets trail the logs' end offsets (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar


class Partition(Protocol):
    """A topic partition (aiokafka's ``TopicPartition``, faust's ``TP``: both named tuples)."""

    @property
    def topic(self) -> str: ...

    @property
    def partition(self) -> int: ...


P = TypeVar("P", bound=Partition)


@dataclass(frozen=True, slots=True)
class Lag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int
    lag: int


def lag_rows(group: str, committed: Mapping[P, int], ends: Mapping[P, int]) -> list[Lag]:
    """One row per partition the group committed and whose end is known, by topic and partition.

    A committed offset past the end (the end was read first, or a topic was recreated)
    counts as no lag rather than a negative one.
    """
    rows = []
    for tp in sorted(committed, key=lambda t: (t.topic, t.partition)):
        end = ends.get(tp)
        if end is None:
            continue
        rows.append(Lag(group, tp.topic, tp.partition, committed[tp], end, max(end - committed[tp], 0)))
    return rows
