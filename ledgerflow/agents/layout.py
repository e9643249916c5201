"""The partition layout a worker pins, and its refusal to run once partitions were added to a live topic.

A conversation's hash chain, its decisions' exactly-once fence (the ``lf-input`` header and the
dedupe window) and a tenant's training and model-registry state all live in *one* partition:
the one Kafka's default partitioner (murmur2 of the key, modulo the partition count) gives the
key. ``kafka-topics --alter --partitions`` changes the modulus, so producers put a key's next
records in another partition, whose owner has no chain head for it: it would start the chain
again at sequence 1 (a fork the audit reports), decide a duplicate delivery twice, fold a
tenant's training state from nothing. Nothing in Kafka can take partitions away again.

So the layout is pinned and checked, and a changed one is refused without writing anything:

- the hot path commits its offsets with the layout as the commit's metadata
  (``lf-layout conversation.events=6,…``): the group's committed offsets remember, durably, the
  partition counts its progress was made under;
- at start the worker compares the topics' partition counts with that pin and with the copy
  kept in the group ``<group>.layout`` (no pin: the counts of today are pinned), checks that
  co-partitioned topics are equal, and keeps the pin there: a group whose hot path never
  committed (only tenant commands answered so far, or no policy agent) is held to it too;
- while it runs, a timer compares the counts every ``CHECK_EVERY_S``, and the policy agent
  checks every record that would start a new chain: placed where the pinned count puts its
  key, and in a partition below that count (the training and models agents check every
  command: few, tenant-keyed). Producers may see the new partitions before the
  worker does; the placement check is what stops a moved conversation's first turn.
- a misplaced record with the topic's count unchanged (asked of the brokers, ``recent``) was
  misrouted by its producer (another partitioner): it is dead-lettered (``misrouted``) and
  the rest of its batch goes on (``PartitionGuard.misrouted``).

A refusal is one line naming the safe procedure (docs/scaling.md, "Adding partitions") and
exit code 1; every record stays on the log, undecided, for the procedure to replay.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.admin import commit_metadata, partition_counts
from ledgerflow.kafka.placement import Layout, misrouted_reason, pinned_layouts, placement
from ledgerflow.topics import (
    CONVERSATION_EVENTS,
    IDENTITY_AUDIT,
    LAYOUT_GROUP_SUFFIX,
    MODELS_AUDIT,
    MODELS_COMMANDS,
    POLICY_DECISIONS,
    TRAINING_AUDIT,
    TRAINING_COMMANDS,
    USAGE_WINDOWS,
)

log = logging.getLogger(__name__)

PAIRS: dict[str, str] = {
    CONVERSATION_EVENTS: POLICY_DECISIONS,
    TRAINING_COMMANDS: TRAINING_AUDIT,
    MODELS_COMMANDS: MODELS_AUDIT,
}
"""Each keyed input of a single-writer agent -> its co-partitioned output."""
UNPAIRED: tuple[str, ...] = (USAGE_WINDOWS, IDENTITY_AUDIT)
"""Keyed outputs of a single writer with no input to pair with: ``usage.windows`` is keyed by
tenant, and its chains (per tenant and source partition) are read back in order only within one
partition; more partitions move a tenant's next windows elsewhere, and the usage agent's recovery
took its own earlier records for forgeries and wrote their windows again, chained anew (a fork).
``identity.audit`` (written by the CLI and the edges, chained per key) is no worker's, but its
pin is kept here with the others: its CLI writer reads a chain's head partition by partition,
the last record read winning, so a chain moved to a lower partition by a second alter was
continued from a stale head (a second sequence N, a fork), and the audit's walk, partition by
partition, saw it out of order. The CLI refuses to append under another count than the pinned
one (``identity/trail.py``), and the audit names a record outside its chain's partition."""
PINNED = (*PAIRS, *UNPAIRED)
CHECK_EVERY_S = 2.0
REFUSED_EXIT = 1  # an operational failure, a run-time refusal (docs/cli.md)
PROCEDURE = "docs/scaling.md#adding-partitions"


class LayoutChanged(InfrastructureError):
    """Partition counts differ from the pinned layout, or co-partitioned topics differ."""


def changed(pinned: Layout, counts: Mapping[str, int]) -> str | None:
    """One line naming the first topic whose count is not the pinned one; None if none differs."""
    for base in sorted(pinned.counts):
        now, then = counts.get(base), pinned.counts[base]
        if now is not None and now != then:
            return (
                f"{base} has {now} partitions but this worker group's progress was made with {then}: "
                "partitions were added to a live topic, which moves keys to other partitions and would fork "
                f"their hash chains; refusing to decide anything (records stay on the log): see {PROCEDURE}"
            )
    return None


def uneven(counts: Mapping[str, int]) -> str | None:
    """One line naming a co-partitioned pair with different counts; None if every pair is equal."""
    for source, output in PAIRS.items():
        if source in counts and output in counts and counts[source] != counts[output]:
            return (
                f"{output} has {counts[output]} partitions but {source} has {counts[source]}: they must be "
                f"equal (outputs are co-partitioned with inputs); refusing to run: see {PROCEDURE}"
            )
    return None


def misplaced(msg: Any, partitions: int) -> str | None:
    """One line if record ``msg`` is not in the partition ``partitions`` puts its key in (or in a
    partition beyond them); None if it is. An unkeyed record is only checked for the latter."""
    beyond = msg.partition >= partitions
    if not beyond and (msg.key is None or placement(msg.key, partitions) == msg.partition):
        return None
    where = "beyond" if beyond or msg.key is None else f"not in partition {placement(msg.key, partitions)} of"
    return (
        f"{msg.topic}[{msg.partition}]@{msg.offset} (key {msg.key!r}) is {where} the {partitions} partitions "
        f"this worker pinned: partitions were added to a live topic (or a producer does not use Kafka's "
        f"default partitioner); refusing to decide it (it stays on the log): see {PROCEDURE}"
    )


def misrouted(msg: Any, pinned: int, now: int) -> str | None:
    """Pure: the dead-letter reason of record ``msg``, ``misplaced`` below the ``pinned`` count,
    when its topic has ``now`` partitions: with the pinned count still, its producer does not use
    Kafka's default partitioner (one record refused, everything else goes on); None when
    partitions were added (the worker must stop: ``refuse``)."""
    if now != pinned or msg.key is None:
        return None
    return misrouted_reason(msg.key, msg.partition, pinned)


@dataclass(frozen=True, slots=True)
class PartitionGuard:
    """An agent's checks against the pinned count of its input (``refuse`` ends the process)."""

    partitions: int
    refuse: Callable[[str], None]
    count: Callable[[], Awaitable[int]] | None = None
    """The input topic's partition count now, asked only when a record is misplaced (None: every
    misplaced record is refused)."""

    async def misrouted(self, messages: Sequence[Any]) -> list[str]:
        """The dead-letter reasons of ``messages``, records ``misplaced`` below the pinned count (see
        :func:`misrouted`; the count is asked once), or ``refuse`` if partitions were added; a
        count that cannot be asked propagates (InfrastructureError: the batch is tried again)."""
        now = None if self.count is None else await self.count()
        reasons = []
        for msg in messages:
            reason = None if now is None else misrouted(msg, self.partitions, now)
            if reason is None:
                self.refuse(misplaced(msg, self.partitions) or "")
                raise AssertionError("refuse returned")  # it ends the process
            reasons.append(reason)
        return reasons

    def batch(self, messages: Sequence[Any]) -> None:
        """Before anything of a batch is recovered or decided: no record beyond the pinned partitions."""
        for msg in messages:
            if msg.partition >= self.partitions:
                self.refuse(misplaced(msg, self.partitions) or "")


def refuse(problem: str) -> None:
    """Log ``problem`` and end the process at once: no batch after this one is decided, and
    nothing in flight needs a graceful end (every effect is recovered from the logs)."""
    log.error("worker: %s", problem)
    for handler in logging.getLogger().handlers + logging.getLogger("ledgerflow").handlers:
        handler.flush()
    os._exit(REFUSED_EXIT)


_COUNTED = (*PAIRS, *PAIRS.values(), *UNPAIRED)


def counts_of(settings: Settings, raw: Mapping[str, int]) -> dict[str, int]:
    """``raw`` (by topic name) by base name."""
    return {base: raw[settings.topic(base)] for base in _COUNTED if settings.topic(base) in raw}


async def current(settings: Settings) -> dict[str, int]:
    """Partition counts of the pinned topics and their outputs, by base name."""
    names = [settings.topic(b) for b in _COUNTED]
    return counts_of(settings, await partition_counts(settings, names))


async def count_now(settings: Settings, base: str) -> int:
    """The partition count of topic ``base`` as the brokers report it now."""
    return (await partition_counts(settings, [settings.topic(base)]))[settings.topic(base)]


COUNT_FRESH_S = 1.0
"""How long a count asked for a misplaced turn is taken as today's (``recent``)."""


def recent(
    fetch: Callable[[], Awaitable[int]],
    fresh_s: float = COUNT_FRESH_S,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[], Awaitable[int]]:
    """``fetch``, asked again only once its last answer is ``fresh_s`` old: a producer misrouting
    every turn costs one admin request a second, not one per batch (each is a new connection)."""
    last: list[tuple[float, int]] = []

    async def count() -> int:
        if not last or clock() - last[0][0] >= fresh_s:
            last[:] = [(clock(), await fetch())]
        return last[0][1]

    return count


def kept_in(group: str) -> str:
    """The group that keeps ``group``'s pin apart from its progress (no consumer ever joins it)."""
    return group + LAYOUT_GROUP_SUFFIX


async def pin(settings: Settings, group: str) -> Layout:
    """The layout this worker runs with; LayoutChanged (one line) if it must not run.

    The pin is read from the metadata of the group's committed offsets and of the commits kept
    for it in ``kept_in(group)``: every layout found must be today's; with none (a new group,
    commits of an older worker), today's counts are pinned. The pin is then kept (again), so a
    worker group that never committed progress on the hot path (only training or model-registry
    commands so far, or a worker without the policy agent) is held to it too."""
    counts = await current(settings)
    problem = uneven(counts)
    if problem is None:
        # Waits while Kafka has no group coordinator yet (a fresh cluster): kafka.admin asks patiently.
        found = await pinned_layouts(settings, group)  # the group's commits, then kept_in(group)'s
        today = {b: counts[b] for b in PINNED if b in counts}
        # A pin an older worker kept names fewer topics: today's counts pin the others from now on.
        pinned = Layout({**today, **found[0].counts}) if found else Layout(today)
        problem = next((c for p in found if (c := changed(p, counts)) is not None), None)
        if problem is None:
            where = [TopicPartition(settings.topic(base), 0) for base in sorted(pinned.counts)]
            await commit_metadata(settings, kept_in(group), pinned.encode(), where)
            return pinned
    raise LayoutChanged(problem)


async def watch(settings: Settings, pinned: Layout) -> None:
    """Refuse as soon as a pinned topic's partition count changes (the timer's body)."""
    try:
        counts = await current(settings)
    except Exception as exc:  # the broker is away: the next tick asks again
        log.warning("worker: partition counts unavailable (%r); checking again in %.0f s", exc, CHECK_EVERY_S)
        return
    problem = changed(pinned, counts) or uneven(counts)
    if problem is not None:
        refuse(problem)
