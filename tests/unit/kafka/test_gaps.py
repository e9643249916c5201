"""Which partitions may hold records a reader has not applied (kafka/logs.gaps_of): below end - 1."""

from __future__ import annotations

from aiokafka import TopicPartition

from ledgerflow.kafka.logs import gaps_of

A0, A1, B0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)


def test_a_partition_applied_to_its_last_offset_is_no_gap_and_an_empty_one_neither() -> None:
    assert gaps_of({"a:0": 9, "b:0": -1}, {A0: 10, B0: 0}) == {}


def test_a_partition_behind_or_never_applied_is_a_gap_with_its_end() -> None:
    assert gaps_of({"a:0": 7}, {A0: 10, A1: 3, B0: 0}) == {A0: 10, A1: 3}
