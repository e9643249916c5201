"""Where a keyed record belongs: Kafka's default partitioner, under the partition layout the
worker group pinned.

A conversation's decision chain, its decisions' exactly-once fence and the order of its turns in
its read model hold because all its turns are in one partition: the one murmur2 of its key,
modulo the topic's partition count, names (what every ledgerflow producer and the edge's hub
use). A turn somewhere else — written by a producer with another partitioner, or placed by more
partitions than the workers pinned — breaks those promises, so the policy agent, the projector,
a rebuild and the audit's rebuild all leave it out by the same rule (``Placements``), under the
same count: the one the worker group pinned (agents/layout.py), or today's when none is pinned.
A tenant's ``training.audit`` and ``models.audit`` outcomes are placed by the same rule under
its tenant key (their agent writes them into the partition of its command): the reference data
and the projection take none from another partition (``misplaced_reason``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from aiokafka.partitioner import murmur2

from ledgerflow.config import Settings
from ledgerflow.digits import ascii_digits
from ledgerflow.kafka.admin import group_metadata, partition_counts
from ledgerflow.topics import (
    LAYOUT_GROUP_SUFFIX,
    MODELS_AUDIT,
    MODELS_COMMANDS,
    TRAINING_AUDIT,
    TRAINING_COMMANDS,
    WORKER_GROUP,
)

__all__ = [
    "MARK",
    "MISROUTED",
    "Layout",
    "Placements",
    "misplaced_reason",
    "misrouted_reason",
    "pinned_layouts",
    "pinned_placements",
    "pinned_placements_of",
    "placement",
]

MARK = "lf-layout "
MISROUTED = "misrouted"
"""The dead-letter reason (code) of a keyed record its producer put where its key does not belong."""
PLACED_AS = {TRAINING_AUDIT: TRAINING_COMMANDS, MODELS_AUDIT: MODELS_COMMANDS}
"""An agent's audit topic -> its command topic: the agent writes an outcome into its command's
partition (co-partitioned, equal counts), so the audit topic is placed under the count pinned for
the command topic (agents/layout.py pins the inputs)."""
MEMO_KEYS = 100_000
"""Keys whose placement a ``Placements`` remembers before it forgets them all (conversations repeat)."""


@dataclass(frozen=True, slots=True)
class Layout:
    """Partition count per topic base name."""

    counts: Mapping[str, int]

    def encode(self) -> str:
        return MARK + ",".join(f"{t}={n}" for t, n in sorted(self.counts.items()))

    @classmethod
    def decode(cls, text: str | None) -> Layout | None:
        """The layout in a commit's metadata; None if it holds none (an older worker, another tool)."""
        if not text or not text.startswith(MARK):
            return None
        counts: dict[str, int] = {}
        for item in text[len(MARK) :].split(","):
            name, _, number = item.partition("=")
            if not ascii_digits(number):
                return None
            counts[name] = int(number)
        return cls(counts)

    def count_of(self, base: str) -> int | None:
        """The count pinned for topic ``base``: its own, else its command topic's (``PLACED_AS``)."""
        own = self.counts.get(base)
        return own if own is not None or base not in PLACED_AS else self.counts.get(PLACED_AS[base])


def placement(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner: the partition a producer puts ``key`` in (the edge's hub agrees)."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def misrouted_reason(key: bytes, partition: int, partitions: int) -> str:
    """Pure: the dead-letter reason of a record with ``key`` found in ``partition`` of ``partitions``."""
    return (
        f"{MISROUTED}: key {key!r} belongs in partition {placement(key, partitions)} of {partitions}, "
        f"not {partition}: its producer does not use Kafka's default partitioner"
    )


@dataclass(slots=True)
class Placements:
    """Whether a keyed record is in the partition its key belongs in among ``partitions``
    (memoised per key: murmur2 in Python costs microseconds, a turn's conversation repeats)."""

    partitions: int
    _memo: dict[bytes, int] = field(default_factory=dict)

    def belongs(self, key: bytes | None, partition: int) -> bool:
        """In its key's partition (an unkeyed record: in one of the ``partitions``)."""
        if key is None:
            return partition < self.partitions
        placed = self._memo.get(key)
        if placed is None:
            if len(self._memo) >= MEMO_KEYS:
                self._memo.clear()
            placed = self._memo[key] = placement(key, self.partitions)
        return placed == partition


def misplaced_reason(tenant: str, partition: int, placed: Placements | None) -> str | None:
    """Pure: why an outcome of ``tenant`` read from ``partition`` is not where its agent writes
    the tenant's outcomes under ``placed`` (None: no layout known), or None if it is."""
    if placed is None:
        return "the partition layout is not known (the reader was not started)"
    if placed.belongs(tenant.encode(), partition):
        return None
    home = placement(tenant.encode(), placed.partitions)
    return (
        f"tenant {tenant!r} belongs in partition {home} of {placed.partitions}, not {partition}: "
        "its agent writes none of its outcomes here"
    )


async def pinned_layouts(settings: Settings, group: str) -> list[Layout]:
    """Every layout pinned for consumer group ``group``: in the metadata of its committed offsets,
    then of the commits kept for it in ``group`` + ``LAYOUT_GROUP_SUFFIX`` (agents/layout.py keeps
    the pin there), in that order; commits holding no layout (an older worker, another tool) are
    left out."""
    found: list[Layout] = []
    for name in (group, group + LAYOUT_GROUP_SUFFIX):
        committed = await group_metadata(settings, name)
        found += [layout for text in committed.values() if (layout := Layout.decode(text)) is not None]
    return found


async def pinned_placements(settings: Settings, base: str) -> Placements:
    """``Placements`` of topic ``base`` under the count the worker group pinned (read, never
    written: agents/layout.py keeps the pin), or today's count when no worker pinned one."""
    return (await pinned_placements_of(settings, [base]))[base]


async def pinned_placements_of(settings: Settings, bases: Iterable[str]) -> dict[str, Placements]:
    """``pinned_placements`` of each topic of ``bases`` (the pin asked once)."""
    names = tuple(bases)
    layouts = await pinned_layouts(settings, settings.topic_prefix + WORKER_GROUP)
    found: dict[str, Placements] = {}
    for base in names:
        pinned = next((n for layout in layouts if (n := layout.count_of(base)) is not None), None)
        if pinned is not None:
            found[base] = Placements(pinned)
    today = [settings.topic(base) for base in names if base not in found]
    if today:
        counts = await partition_counts(settings, today)
        found.update({base: Placements(counts[settings.topic(base)]) for base in names if base not in found})
    return found
