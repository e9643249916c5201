"""SSE cursors: encoding, parsing, resume decisions (pure, no I/O)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.api import cursors
from ledgerflow.api.cursors import Resume, clamp_to_retention, decode, encode, resume_from, served
from ledgerflow.errors import ValidationError

TENANT_KEYS = [(c, p) for c in "ed" for p in range(6)]
CONV_KEYS = [("e", 3), ("d", 3)]

positions = st.dictionaries(
    st.tuples(st.sampled_from(sorted(cursors.TOPIC_CODES)), st.integers(0, 9999)),
    st.integers(-1, 2**62),
    min_size=1,
    max_size=24,
)


@given(positions)
def test_encode_then_decode_returns_the_same_positions(pos: dict) -> None:
    assert decode(encode(pos)) == pos


def test_encoding_is_sorted_and_readable() -> None:
    assert encode({("e", 3): 41, ("d", 3): 40}) == "d3:40.e3:41"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "x3:1",
        "e3",
        "e3:",
        "e:1",
        "e3:1.",
        "e3:1..d3:2",
        "e3:-2",
        "e3:1.e3:2",
        "e12345:1",
        "e3:1\nd3:2",
        "e3:1 ",
        "e" * 5000,
        "e3:99999999999999999999",
    ],
)
def test_malformed_cursor_is_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        decode(bad)


def test_absent_last_event_id_starts_live_without_reset() -> None:
    assert resume_from("", CONV_KEYS) == Resume(None)
    assert resume_from("   ", CONV_KEYS) == Resume(None)


def test_malformed_last_event_id_restarts_live_with_a_reset() -> None:
    resume = resume_from("not-a-cursor", CONV_KEYS)
    assert resume.seen is None and resume.restart == "live"
    assert resume.reset is not None and "unknown cursor" in resume.reset


def test_cursor_of_another_stream_restarts_live_with_a_reset() -> None:
    other_conversation = encode({("e", 4): 10, ("d", 4): 2})
    resume = resume_from(other_conversation, CONV_KEYS)
    assert resume.seen is None and resume.reset is not None and "another stream" in resume.reset
    tenant_cursor = encode({k: 0 for k in TENANT_KEYS})
    assert resume_from(tenant_cursor, CONV_KEYS).seen is None


def test_cursor_of_this_stream_resumes_after_it() -> None:
    resume = resume_from("d3:7.e3:12", CONV_KEYS)
    assert resume == Resume({("e", 3): 12, ("d", 3): 7})


def test_cursor_within_retention_is_kept() -> None:
    resume = Resume({("e", 3): 12, ("d", 3): -1})
    assert clamp_to_retention(resume, {("e", 3): 13, ("d", 3): 0}) is resume


def test_cursor_older_than_retention_restarts_at_the_earliest_record_with_a_reset() -> None:
    clamped = clamp_to_retention(Resume({("e", 3): 12, ("d", 3): 5}), {("e", 3): 20, ("d", 3): 0})
    assert clamped.seen == {("e", 3): 19, ("d", 3): 5}
    assert clamped.restart == "earliest"
    assert clamped.reset is not None and "e3" in clamped.reset and "d3" not in clamped.reset


def test_live_resume_is_not_clamped() -> None:
    assert clamp_to_retention(Resume(None), {("e", 3): 20}) == Resume(None)


def test_served_raises_every_partition_to_the_mark_and_never_lowers() -> None:
    position = {("e", 0): 5, ("e", 1): 50, ("d", 0): -1}
    mark = {("e", 0): 9, ("e", 1): 30, ("d", 0): 4, ("e", 7): 100}  # next offsets; e7 is not ours
    assert served(position, mark) == {("e", 0): 8, ("e", 1): 50, ("d", 0): 3}
    assert served(position, None) == position
    assert served(position, mark) is not position


ROOT = Path(__file__).resolve().parents[3]


def test_sse_doc_code_blocks_run_in_order() -> None:
    blocks = re.findall(
        r"```python\n(.*?)```", (ROOT / "docs" / "sse.md").read_text(encoding="utf-8"), re.DOTALL
    )
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/sse.md block {index}", "exec"), namespace)


def test_cursors_module_is_pure() -> None:
    tree = ast.parse((ROOT / "ledgerflow" / "api" / "cursors.py").read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    pure = {"__future__", "hashlib", "re", "collections.abc", "dataclasses", "ledgerflow.errors"}
    assert imported <= pure, imported


# --- stream tags: a cursor names its stream ---

KEYS3 = [("e", 3), ("d", 3)]


def test_a_tagged_cursor_round_trips_and_its_tag_is_the_streams() -> None:
    tag = cursors.stream_tag("prod.", "acme", "conv-1")
    cursor = cursors.encode({("e", 3): 41, ("d", 3): 40}, tag)
    assert cursor == f"{tag}.d3:40.e3:41" and cursors.tag_of(cursor) == tag
    assert cursors.decode(cursor) == {("d", 3): 40, ("e", 3): 41}
    assert cursors.resume_from(cursor, KEYS3, tag) == cursors.Resume({("e", 3): 41, ("d", 3): 40})


def test_tags_tell_conversations_tenants_and_generations_apart() -> None:
    tags = {
        cursors.stream_tag("prod.", "acme", "conv-1"),
        cursors.stream_tag("prod.", "acme", "conv-2"),
        cursors.stream_tag("prod.", "acme", None),
        cursors.stream_tag("prod.", "globex", "conv-1"),
        cursors.stream_tag("prod2.", "acme", "conv-1"),
        cursors.stream_tag("prod.", "acme", ""),  # an empty conversation id is not the tenant stream
        cursors.stream_tag("prod.ac", "me", "conv-1"),  # no ambiguity across the parts' boundaries
    }
    assert len(tags) == 7
    assert all(cursors.tag_of(cursors.encode({("e", 0): 1}, t)) == t for t in tags)


def test_a_cursor_of_another_stream_on_the_same_partitions_restarts_live_with_a_reset() -> None:
    """Before tags, another conversation's cursor on the same partition (or one of the same
    partitions of the previous generation of topics, after a migrate) was taken as positions:
    this stream's records below them were never sent."""
    theirs = cursors.encode({("e", 3): 900, ("d", 3): 800}, cursors.stream_tag("p.", "acme", "conv-2"))
    resume = cursors.resume_from(theirs, KEYS3, cursors.stream_tag("p.", "acme", "conv-1"))
    assert (resume.seen, resume.restart) == (None, "live")
    assert resume.reset is not None and "another stream" in resume.reset
    old_generation = cursors.encode({("e", 3): 5, ("d", 3): 4}, cursors.stream_tag("old.", "acme", None))
    assert cursors.resume_from(old_generation, KEYS3, cursors.stream_tag("new.", "acme", None)).seen is None


def test_a_cursor_without_a_tag_is_still_taken_as_positions() -> None:
    resume = cursors.resume_from("d3:7.e3:12", KEYS3, cursors.stream_tag("p.", "acme", "conv-1"))
    assert resume == cursors.Resume({("e", 3): 12, ("d", 3): 7})


@pytest.mark.parametrize("cursor", ["s0123456789ab", "s0123456789ab.", "sXYZ.e3:1", "s0123456789abc.e3:1"])
def test_a_bad_or_lone_tag_is_a_malformed_cursor(cursor: str) -> None:
    resume = cursors.resume_from(cursor, KEYS3, cursors.stream_tag("p.", "acme", None))
    assert resume.seen is None and resume.reset is not None and resume.reset.startswith("unknown cursor")
