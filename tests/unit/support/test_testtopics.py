"""Which topics a new test session drops: only those a test's own prefix made."""

from __future__ import annotations

from tests.support.testtopics import left_by_tests


def test_only_names_of_a_tests_prefix_are_dropped() -> None:
    names = [
        "t0123456789.conversation.events",
        "tabcdef0123.policy.decisions.dlq",
        "conversation.events",  # the default prefix: a user's
        "bench-62a64ea8-1pipeline.conversation.events",  # the bench deletes its own
        "t012345678.short",  # nine digits: not a test's
        "tABCDEF0123.upper",  # uuid hex is lowercase
        "xt0123456789.conversation.events",
        "__consumer_offsets",
    ]
    assert left_by_tests(names) == ["t0123456789.conversation.events", "tabcdef0123.policy.decisions.dlq"]
