"""Which of a consumer's assigned partitions still exist, by the broker's latest metadata.

A partition of a topic that no longer exists (deleted, or a broker came back without it) has no
leader, and aiokafka's fetcher, finding an assigned partition without one, asks for metadata again
at once, in a loop without backoff, logging ``Topic … not found in cluster metadata`` at each answer:
thousands of lines a second, half a core, for as long as the partition stays assigned. A reader that
holds a manual assignment must therefore drop such partitions itself (``presence`` says which), and
look for the topic again with a backoff of its own.

``on_metadata`` lets a reader decide at the first metadata answer that lacks a topic, before the
fetcher's loop has turned more than once (checking after each poll let it log thousands of lines per
poll). It uses the consumer's client, which aiokafka 0.14 (pinned) does not expose publicly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition


@dataclass(frozen=True, slots=True)
class Presence:
    """An assignment split by the metadata: partitions that exist, and those that do not."""

    kept: tuple[TopicPartition, ...]
    gone: tuple[TopicPartition, ...]

    @property
    def missing_topics(self) -> list[str]:
        """Topics with a partition gone, sorted."""
        return sorted({tp.topic for tp in self.gone})


def presence(assigned: Iterable[TopicPartition], known: Mapping[str, AbstractSet[int] | None]) -> Presence:
    """Split ``assigned`` by ``known`` (topic -> its partition ids, None when the metadata lacks the
    topic; a topic not in ``known`` counts as lacking). A partition id beyond a topic's current ones
    (a topic re-created with fewer partitions) is gone too. Both parts sorted."""
    kept: list[TopicPartition] = []
    gone: list[TopicPartition] = []
    for tp in sorted(assigned):
        partitions = known.get(tp.topic)
        (kept if partitions is not None and tp.partition in partitions else gone).append(tp)
    return Presence(tuple(kept), tuple(gone))


def known_partitions(consumer: Any, topics: Iterable[str]) -> dict[str, AbstractSet[int] | None]:
    """What ``consumer``'s metadata knows of ``topics`` (None: not in it). Asks the broker nothing."""
    return {topic: consumer.partitions_for_topic(topic) for topic in topics}


def assignment_presence(consumer: Any) -> Presence:
    """``consumer``'s assignment split by what its metadata knows now (``presence`` over
    ``known_partitions``): the question each reader asks after a metadata answer."""
    assigned = consumer.assignment()
    return presence(assigned, known_partitions(consumer, {tp.topic for tp in assigned}))


def on_metadata(consumer: Any, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` (on the event loop, synchronously) after each metadata update of the started
    ``consumer``; returns the function that stops it."""
    cluster = consumer._client.cluster

    def listener(_: object) -> None:
        callback()

    cluster.add_listener(listener)
    return lambda: cluster.remove_listener(listener)
