"""``presence``: which assigned partitions still exist by the metadata (pure)."""

from __future__ import annotations

from aiokafka import TopicPartition

from ledgerflow.kafka.vanished import Presence, presence


def tp(topic: str, partition: int) -> TopicPartition:
    return TopicPartition(topic, partition)


def test_every_partition_of_known_topics_is_kept() -> None:
    got = presence([tp("b", 1), tp("a", 0), tp("b", 0)], {"a": {0}, "b": {0, 1}})
    assert got == Presence((tp("a", 0), tp("b", 0), tp("b", 1)), ())
    assert got.missing_topics == []


def test_a_topic_the_metadata_lacks_is_gone_whole() -> None:
    got = presence([tp("a", 0), tp("b", 0), tp("b", 1)], {"a": {0}, "b": None})
    assert got.kept == (tp("a", 0),)
    assert got.gone == (tp("b", 0), tp("b", 1))
    assert got.missing_topics == ["b"]


def test_a_topic_not_asked_about_counts_as_lacking() -> None:
    assert presence([tp("a", 0)], {}).missing_topics == ["a"]


def test_partitions_beyond_a_recreated_topic_are_gone() -> None:
    got = presence([tp("a", 0), tp("a", 1), tp("a", 2)], {"a": {0, 1}})
    assert got.kept == (tp("a", 0), tp("a", 1))
    assert got.gone == (tp("a", 2),)
    assert got.missing_topics == ["a"]


def test_nothing_assigned_nothing_gone() -> None:
    assert presence([], {"a": None}) == Presence((), ())
