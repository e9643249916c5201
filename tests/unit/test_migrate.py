"""The pure parts of ``ledgerflow migrate``: prefixes, placement of a copied record, refusals."""

from __future__ import annotations

import pytest

from ledgerflow.errors import ValidationError
from ledgerflow.kafka.placement import placement
from ledgerflow.migrate import (
    MAX_TOPIC_CHARS,
    Checkpoint,
    Copied,
    Migration,
    check_prefixes,
    checkpoint_problem,
    layout_problem,
    nonempty_problem,
    summary,
    target_partition,
)


def test_the_new_prefix_must_be_another_one() -> None:
    with pytest.raises(ValidationError, match="is the source prefix"):
        check_prefixes("gen1.", "gen1.")
    with pytest.raises(ValidationError, match="is the source prefix"):
        check_prefixes("", "")
    check_prefixes("", "gen2.")
    check_prefixes("gen1.", "gen1-b_2.")


@pytest.mark.parametrize("prefix", ["gen 2.", "gen2/", "gén2.", "gen2.\n", "a:b."])
def test_a_prefix_kafka_would_refuse_as_a_topic_name_is_one_line(prefix: str) -> None:
    with pytest.raises(ValidationError, match="takes only letters, digits"):
        check_prefixes("", prefix)


def test_a_prefix_too_long_for_the_longest_topic_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="over Kafka's 249"):
        check_prefixes("", "x" * (MAX_TOPIC_CHARS - 10))
    check_prefixes("", "x" * (MAX_TOPIC_CHARS - len("conversation.events.dlq")))


def test_a_keyed_record_goes_where_kafkas_default_partitioner_puts_its_key() -> None:
    keys = [f"conv-{n}".encode() for n in range(200)]
    for partitions in (1, 3, 5, 12):
        for source in (0, 2):
            assert [target_partition(k, source, partitions) for k in keys] == [
                placement(k, partitions) for k in keys
            ]
    assert len({target_partition(k, 0, 5) for k in keys}) == 5  # spread over every new partition


def test_a_record_without_a_key_keeps_its_old_partition_modulo_the_new_count() -> None:
    assert [target_partition(None, p, 5) for p in range(7)] == [0, 1, 2, 3, 4, 0, 1]
    assert target_partition(None, 2, 12) == 2


def test_existing_topics_of_another_layout_are_named() -> None:
    expected = {"conversation.events": 5, "policy.decisions": 5, "policy.rules": 1}
    assert layout_problem(dict(expected), expected) is None
    got = layout_problem({**expected, "policy.decisions": 6}, expected)
    assert got == "policy.decisions has 6 partitions, not 5"
    assert (
        layout_problem({"conversation.events": 5}, expected) == "policy.decisions has None partitions, not 5"
    )


def test_a_copy_into_topics_holding_records_is_refused_naming_one_and_how_many_more() -> None:
    assert nonempty_problem("gen2.", {"gen2.a": 0, "gen2.b": 0}) is None
    one = nonempty_problem("gen2.", {"gen2.policy.rules": 3, "gen2.b": 0})
    assert one is not None and one.startswith("gen2.policy.rules already holds 3 records: ")
    assert "delete the topics of the prefix 'gen2.'" in one
    two = nonempty_problem("gen2.", {"gen2.x": 1_234, "gen2.a": 2})
    assert two is not None and two.startswith("gen2.a already holds 2 records (and 1 more topics)")


def test_the_summary_names_each_topic_and_the_next_steps() -> None:
    done = Migration(
        "gen2.", [Copied("conversation.events", 12_345, 3, 5), Copied("policy.rules", 2, 1, 1)], 2.5
    )
    text = summary(done, "gen1.")
    assert text.splitlines()[0] == "copied 12,347 records from the prefix 'gen1.' into 'gen2.' in 2.5 s:"
    assert "conversation.events" in text and "12,345  (3 → 5 partitions)" in text
    assert "LEDGERFLOW_TOPIC_PREFIX=gen2." in text and "ledgerflow audit --topic-prefix gen2." in text
    assert done.to_json()["topics"] == {
        "conversation.events": {"records": 12_345, "partitions": [3, 5]},
        "policy.rules": {"records": 2, "partitions": [1, 1]},
    }


def test_records_written_to_the_source_meanwhile_are_a_warning_line_and_counted() -> None:
    done = Migration("gen2.", [Copied("conversation.events", 10, 3, 5)], 1.0, written_meanwhile=1_500)
    warning = [line for line in summary(done, "").splitlines() if line.startswith("warning:")]
    assert warning == [
        "warning: 1,500 records were written to the source's input topics while it was copied and are not in "
        "'gen2.' yet: stop the producers, then copy them with --continue"
    ]
    assert done.to_json()["written_meanwhile"] == 1_500
    assert not [line for line in summary(Migration("gen2."), "").splitlines() if line.startswith("warning:")]


def test_a_checkpoint_reads_back_what_it_wrote_and_nothing_else() -> None:
    assert Checkpoint.decode(Checkpoint("gen1.", 1_234).encode()) == Checkpoint("gen1.", 1_234)
    assert Checkpoint.decode(Checkpoint("", 0).encode()) == Checkpoint("", 0)
    for text in (
        "",
        "lf-layout conversation.events=6",  # another group's metadata
        "{",
        "[]",
        '{"lf-migrate": 2, "from": "a.", "records": 1}',
        '{"lf-migrate": 1, "from": 7, "records": 1}',
        '{"lf-migrate": 1, "from": "a.", "records": -1}',
        '{"lf-migrate": 1, "from": "a.", "records": 1.0}',
        '{"lf-migrate": 1, "from": "a.", "records": true}',
    ):
        assert Checkpoint.decode(text) is None, text


def test_continue_needs_one_finished_copy_of_the_same_source() -> None:
    done = Checkpoint("gen1.", 10)
    assert checkpoint_problem({done}, "gen1.", "gen2.") is None
    for nothing in (set(), {None}):
        problem = checkpoint_problem(nothing, "gen1.", "gen2.")
        assert problem is not None and problem.startswith("no finished copy into 'gen2.' to continue")
    mixed = checkpoint_problem({done, None}, "gen1.", "gen2.")
    assert mixed is not None and "inconsistent" in mixed
    other = checkpoint_problem({Checkpoint("gen0.", 10)}, "gen1.", "gen2.")
    assert (
        other
        == "'gen2.' is a copy of the prefix 'gen0.', not of 'gen1.': continue it with --topic-prefix 'gen0.'"
    )


def test_a_continued_copy_says_so() -> None:
    done = Migration("gen2.", [Copied("conversation.events", 7, 3, 5)], 0.5, continued=True)
    assert summary(done, "gen1.").startswith("copied 7 records more (written since the last copy) from")
    assert done.to_json()["continued"] is True
