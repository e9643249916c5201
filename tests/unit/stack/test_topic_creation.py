"""Reading a CreateTopics response: which topics the broker refused, and why."""

from __future__ import annotations

from ledgerflow.kafka.admin import creation_errors


def test_created_and_already_existing_topics_are_no_error() -> None:
    assert creation_errors([("a", 0, None), ("b", 36, "Topic 'b' already exists.")]) == []


def test_a_refused_topic_is_named_with_the_broker_message_or_its_code() -> None:
    errors = creation_errors(
        [("a", 38, "Replication factor: 3 larger than available brokers: 1."), ("b", 40, None), ("c", 41)]
    )
    assert errors == [
        "a (Replication factor: 3 larger than available brokers: 1.)",
        "b (error code 40)",
        "c (error code 41)",
    ]
