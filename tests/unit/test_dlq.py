"""The pure parts of ``ledgerflow.dlq``: topic names, read windows, summaries, formatting."""

from __future__ import annotations

import base64
import inspect
from io import BytesIO

import orjson
import pytest
from fastavro import schemaless_writer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.contracts.registry import default_registry
from ledgerflow.dlq import (
    PREVIEW_BYTES,
    DlqScan,
    LocatedDeadLetter,
    dlq_cli,
    dlq_topic_names,
    format_detail,
    format_micros,
    format_table,
    hexdump,
    latest_window,
    newest,
    offset_window,
    render_list,
    show_bytes,
    summarize,
    to_json,
)
from ledgerflow.errors import DecodeError, ValidationError
from ledgerflow.topics import DLQ_TOPICS
from tests.support.sourcecheck import REPO, run_python_blocks

T0 = 1_780_000_000_000_000
SETTINGS = Settings(topic_prefix="p.")


def _letter(
    offset: int = 7,
    code: str = "truncated",
    source: str = "p.conversation.events",
    failed_at: int = T0,
    value: bytes = b"\xc3\x01abc",
    key: bytes | None = b"conv-1",
    headers: tuple[tuple[str, bytes | None], ...] = (("traceparent", b"00-ab"), ("x", None)),
    dlq_offset: int | None = None,
) -> LocatedDeadLetter:
    d = DeadLetter(
        source, 2, offset, key, value, headers, f"{code}: detail {offset}", code, failed_at, "policy"
    )
    return LocatedDeadLetter(source + ".dlq", 0, offset if dlq_offset is None else dlq_offset, d, b"enc")


UNREADABLE = LocatedDeadLetter("p.usage.windows.dlq", 0, 3, None, b"junk", "not-single-object: 6a75")


def test_dlq_topic_names_prefix_the_base_and_accept_a_dlq_suffix() -> None:
    assert dlq_topic_names(SETTINGS, "conversation.events") == ["p.conversation.events.dlq"]
    assert dlq_topic_names(SETTINGS, "conversation.events.dlq") == ["p.conversation.events.dlq"]
    assert dlq_topic_names(SETTINGS) == [f"p.{spec.base}" for spec in DLQ_TOPICS]
    assert all(name.endswith(".dlq") for name in dlq_topic_names(SETTINGS))


def test_dlq_topic_names_refuse_an_empty_topic() -> None:
    with pytest.raises(ValidationError, match="--topic"):
        dlq_topic_names(SETTINGS, ".dlq")


def test_latest_window_reads_everything_or_the_last_n_of_a_partition() -> None:
    assert latest_window(None)(5, 20) == (5, 20)
    assert latest_window(3)(5, 20) == (17, 20)
    assert latest_window(30)(5, 20) == (5, 20)  # never before the beginning
    with pytest.raises(ValidationError, match="--limit"):
        latest_window(0)


def test_offset_window_is_one_record_or_nothing_outside_the_partition() -> None:
    assert offset_window(7)(5, 20) == (7, 8)
    start, stop = offset_window(4)(5, 20)
    assert start >= stop  # before the beginning (deleted by retention): nothing
    start, stop = offset_window(20)(5, 20)
    assert start >= stop  # not written yet: nothing


def test_newest_keeps_the_latest_failures_in_dlq_order() -> None:
    letters = [_letter(offset=i, failed_at=T0 + f) for i, f in enumerate([5, 1, 9, 3])]
    assert [x.dlq_offset for x in newest(letters, 2)] == [0, 2]
    assert newest(letters, 10) == tuple(letters)
    assert newest(letters, 0) == ()


def test_summarize_counts_by_topic_reason_and_distinct_source_records() -> None:
    letters = [
        _letter(1, "truncated"),
        _letter(1, "truncated", dlq_offset=9),  # redelivered: same source record
        _letter(2, "invalid-envelope"),
        _letter(3, "invalid-envelope", source="p.policy.decisions"),
        UNREADABLE,
    ]
    summary = summarize(letters)
    assert summary["total"] == 5
    assert summary["distinct_source_records"] == 3
    assert summary["by_reason_code"] == {"invalid-envelope": 2, "truncated": 2, "unreadable-dead-letter": 1}
    assert summary["by_source_topic"] == {
        "(unreadable in p.usage.windows.dlq)": 1,
        "p.conversation.events": 3,
        "p.policy.decisions": 1,
    }
    assert summary["by_source_topic_and_reason"]["p.conversation.events"] == {
        "invalid-envelope": 1,
        "truncated": 2,
    }


def test_summarize_of_nothing_is_all_zero() -> None:
    assert summarize([]) == {
        "total": 0,
        "distinct_source_records": 0,
        "by_source_topic": {},
        "by_reason_code": {},
        "by_source_topic_and_reason": {},
    }


def test_format_table_has_one_aligned_line_per_letter() -> None:
    big = _letter(12, "content-too-large", value=b"x" * 70_000)
    lines = format_table([_letter(7), big, UNREADABLE]).splitlines()
    assert len(lines) == 4
    assert lines[0].split()[:2] == ["DLQ", "OFFSET"]
    assert lines[1].split()[:3] == ["7", "p.conversation.events[2]@7", "truncated"]
    assert "'conv-1'" in lines[1] and lines[1].endswith("5")
    assert lines[2].endswith("70000") and "content-too-large" in lines[2]
    assert lines[3].split()[:3] == ["3", "?", "unreadable-dead-letter"] and lines[3].endswith("4")
    assert len({line.index("p.") for line in lines[1:3]}) == 1  # the source column lines up


def test_format_table_clips_long_reasons_to_keep_one_line() -> None:
    long = _letter()
    long = LocatedDeadLetter(
        long.dlq_topic,
        0,
        1,
        DeadLetter(
            "p.conversation.events",
            0,
            1,
            None,
            b"",
            (),
            "undecodable: " + "x" * 500 + "\nsecond line",
            "undecodable",
            T0,
            "policy",
        ),
    )
    (line,) = format_table([long]).splitlines()[1:]
    assert "…" in line and "second line" not in line and len(line) < 200
    assert " null " in line  # no key


def test_format_detail_shows_reason_headers_and_a_hexdump_of_the_first_bytes() -> None:
    value = bytes(range(200))
    text = format_detail(_letter(value=value))
    assert "p.conversation.events partition 2 offset 7" in text
    assert "reason code     truncated" in text and "reason          truncated: detail 7" in text
    assert "agent           policy" in text
    assert "failed at       2026-05-28T" in text
    assert "traceparent = '00-ab'" in text and "x = null" in text
    assert f"200 bytes (first {PREVIEW_BYTES} below)" in text
    dump = [line for line in text.splitlines() if line.startswith("  00")]
    assert len(dump) == PREVIEW_BYTES // 16
    assert dump[0].startswith("  0000  00 01 02")
    assert "3e 3f" in dump[-1] and "40" not in dump[-1].split("|")[0]


def test_format_detail_of_an_unreadable_dlq_record_keeps_its_bytes() -> None:
    text = format_detail(UNREADABLE)
    assert "unreadable      not-single-object" in text
    assert "6a 75 6e 6b" in text and "|junk|" in text


def test_hexdump_pads_the_last_line_and_marks_empty() -> None:
    assert hexdump(b"") == "  (empty)"
    first, second = hexdump(b"A" * 17).splitlines()
    assert first == "  0000  " + " ".join(["41"] * 16) + "  |" + "A" * 16 + "|"
    assert second.index("|") == first.index("|")


def test_show_bytes_quotes_text_and_hexes_binary() -> None:
    assert show_bytes(b"conv-1") == "'conv-1'"
    assert show_bytes(None) == "null"
    assert show_bytes(b"\xc3\x01") == "0xc301"
    assert show_bytes(b"a\nb") == "0x610a62"  # not printable on one line


def test_format_micros_renders_utc_and_survives_absurd_values() -> None:
    assert format_micros(0) == "1970-01-01T00:00:00.000000Z"
    assert format_micros(T0 + 5) == "2026-05-28T20:26:40.000005Z"
    assert "out of range" in format_micros(2**62)


def test_to_json_encodes_bytes_as_base64_and_round_trips() -> None:
    x = _letter(value=b"\x00\xff")
    doc = orjson.loads(orjson.dumps(to_json(x)))
    assert base64.b64decode(doc["value"]) == b"\x00\xff"
    assert base64.b64decode(doc["key"]) == b"conv-1"
    assert doc["headers"] == [
        {"key": "traceparent", "value": base64.b64encode(b"00-ab").decode()},
        {"key": "x", "value": None},
    ]
    assert (doc["source_topic"], doc["partition"], doc["offset"]) == ("p.conversation.events", 2, 7)
    assert (doc["reason_code"], doc["value_size"], doc["failed_at_micros"]) == ("truncated", 2, T0)
    assert doc["dlq_topic"] == "p.conversation.events.dlq"
    unreadable = to_json(UNREADABLE)
    assert unreadable["problem"].startswith("not-single-object")
    assert base64.b64decode(unreadable["raw"]) == b"junk"


def test_render_list_says_when_a_dlq_is_empty_or_missing() -> None:
    empty = render_list(DlqScan((), ("p.training.audit.dlq",), ()), as_json=False)
    assert empty == "no dead letters in p.training.audit.dlq"
    missing = render_list(DlqScan((), (), ("p.nope.dlq",)), as_json=False)
    assert "p.nope.dlq do not exist" in missing and "LEDGERFLOW_TOPIC_PREFIX" in missing


def test_render_list_prints_the_table_and_a_summary_line() -> None:
    text = render_list(
        DlqScan((_letter(1), _letter(2, "invalid-envelope")), ("p.conversation.events.dlq",), ()),
        as_json=False,
    )
    assert text.splitlines()[-1] == "2 dead letter(s); by reason: invalid-envelope 1, truncated 1"
    assert sum("p.conversation.events[2]@" in line for line in text.splitlines()) == 2


def test_render_list_json_has_letters_summary_and_missing_topics() -> None:
    doc = orjson.loads(render_list(DlqScan((_letter(1),), ("a.dlq",), ("b.dlq",)), as_json=True))
    assert [d["offset"] for d in doc["dead_letters"]] == [1]
    assert doc["summary"]["total"] == 1
    assert doc["missing_topics"] == ["b.dlq"]


def test_dlq_cli_refuses_show_without_topic_and_offset_before_any_io() -> None:
    unreachable = Settings(kafka_bootstrap="127.0.0.1:1")
    with pytest.raises(ValidationError, match="--topic T and --offset N"):
        dlq_cli(unreachable, "show", "conversation.events", None, None, False)
    with pytest.raises(ValidationError, match="unknown action"):
        dlq_cli(unreachable, "purge", None, None, None, False)


def test_dead_letters_doc_code_blocks_run_and_repair_makes_a_decodable_record() -> None:
    namespace: dict[str, object] = {}
    assert run_python_blocks(REPO / "docs" / "dead-letters.md", namespace) == 3
    assert inspect.iscoroutinefunction(namespace["replay"])

    entry = default_registry().latest("MessageSubmitted")
    record = {
        "event_id": "0193a7a4-0000-4000-8000-000000000001",
        "type": "MessageSubmitted",
        "schema_version": entry.version,
        "tenant": "acme",
        "subject": "conv-42",
        "occurred_at": 1_780_000_000,
        "producer": "gateway",
        "trace_id": None,
        "sequence": None,
        "prev_hash": None,
        "hash": None,
        "payload": {
            "turn_id": "t1",
            "role": "user",
            "content": "hi",
            "model": "slm-1",
            "tokens": None,
            "language": None,
        },
    }
    out = BytesIO(codec.MAGIC + entry.fingerprint)
    out.seek(0, 2)
    schemaless_writer(out, entry.wire, record)
    poison = out.getvalue()
    with pytest.raises(DecodeError, match="invalid-envelope: occurred_at"):
        codec.decode(poison)
    fixed = namespace["repair"](poison, occurred_at=T0)  # type: ignore[operator]
    event = codec.decode(fixed)
    assert (event.occurred_at, event.event_id, event.payload.content) == (T0, record["event_id"], "hi")


def test_a_misrouted_turn_is_replayed_where_its_key_belongs_and_any_other_letter_where_it_was() -> None:
    from ledgerflow.dlq.replay import destination
    from ledgerflow.kafka.placement import placement

    counts = {"p.conversation.events": 6}
    misrouted = _letter(code="misrouted", key=b"conv-2").letter  # belongs in 4 of 6
    other = _letter(code="truncated", key=b"conv-1").letter
    assert misrouted is not None and other is not None
    assert destination(misrouted, counts) == placement(b"conv-2", 6) == 4 != misrouted.partition
    assert destination(other, counts) == other.partition == 2
    # Hostile: an unkeyed misrouted letter, or a topic whose count is unknown: where it was.
    unkeyed = _letter(code="misrouted", key=None).letter
    assert unkeyed is not None and destination(unkeyed, counts) == 2
    assert destination(misrouted, {}) == 2


def test_a_letter_naming_a_position_its_topic_cannot_hold_is_skipped() -> None:
    import dataclasses

    from ledgerflow.dlq.replay import REPLAY, SKIP, impossible_position, plan

    good = _letter(offset=7, dlq_offset=1)
    assert good.letter is not None
    counts = {"p.conversation.events": 6}
    odd = [
        LocatedDeadLetter(good.dlq_topic, 0, n, dataclasses.replace(good.letter, **change), b"enc")
        for n, change in enumerate([{"partition": 6}, {"partition": -1}, {"offset": -1}], start=2)
    ]
    steps = plan([good, *odd], {}, lambda _d: None, partitions=counts)
    assert [s.action for s in steps] == [REPLAY, SKIP, SKIP, SKIP]
    assert steps[1].why == (
        "it names p.conversation.events[6]@7, which the topic cannot hold (6 partitions, offsets from 0): "
        "not written by an agent"
    )
    assert impossible_position(good.letter, counts) is None
    assert impossible_position(good.letter, {}) is not None  # a topic whose count is not known
    # without the counts (callers that have none), nothing is judged by position
    assert [s.action for s in plan([good, *odd], {}, lambda _d: None)] == [REPLAY] * 4


def test_two_dead_letters_of_one_source_record_are_replayed_once() -> None:
    from ledgerflow.dlq.replay import REPLAY, SKIP, plan

    first, second = _letter(offset=7, dlq_offset=1), _letter(offset=7, dlq_offset=2)  # same source record
    steps = plan([first, second], {}, lambda _d: None)
    assert [s.action for s in steps] == [REPLAY, SKIP]
    assert "another dead letter of the same record" in steps[1].why


@pytest.mark.parametrize(
    "topic", ["policy.decisions", "training.audit", "usage.windows", "models.audit", "identity.audit.dlq"]
)
def test_replay_refuses_a_topic_only_the_agents_write(topic: str) -> None:
    """Their dead letters are the projector's refusals (forged, altered, unchained records) and
    decode: the old replay put them back into the hash-chained log, where they were refused again."""
    from ledgerflow.dlq.replay import refuse_agent_topic

    base = topic.removesuffix(".dlq")
    with pytest.raises(ValidationError, match=f"dlq replay --topic {base}: only ledgerflow's agents write"):
        refuse_agent_topic(topic)
    for source in ("conversation.events", "training.commands", "models.commands", "policy.rules"):
        refuse_agent_topic(source)  # inputs: replayed as before


def test_a_letter_naming_another_source_topic_than_its_dlq_s_is_not_replayed() -> None:
    """A letter written into conversation.events.dlq from outside, naming policy.decisions (or
    another deployment's topic) as its source: the old replay produced it there."""
    from ledgerflow.dlq.replay import SKIP, plan

    forged = _letter(source="p.policy.decisions")
    moved = LocatedDeadLetter("p.conversation.events.dlq", 0, 5, forged.letter, b"enc")
    [step] = plan([moved], {}, lambda _d: None, force=True)
    assert step.action == SKIP
    assert step.why == "it names another source topic ('p.policy.decisions') than its DLQ's"


def test_a_forced_replay_s_own_letter_is_forced_again_only_when_named_by_offset() -> None:
    """A record ``--force`` put back and the worker dead-lettered again carries ``lf-replay-of``:
    a blanket ``--force`` skips it (each run used to send it round once more); ``--offset`` naming
    it forces it; once it decodes it is replayed like any letter."""
    from ledgerflow.dlq.replay import REPLAY, SKIP, plan, replayed_from

    tag = (("lf-replay-of", b"p.conversation.events.dlq[0]@1"),)
    product = _letter(offset=9, dlq_offset=4, headers=(("traceparent", b"00-ab"), *tag))
    plain = _letter(offset=8, dlq_offset=3)
    assert product.letter is not None and plain.letter is not None
    assert replayed_from(product.letter) == "p.conversation.events.dlq[0]@1"
    assert replayed_from(plain.letter) is None
    empty = _letter(headers=(("lf-replay-of", None),)).letter
    assert empty is not None and replayed_from(empty) is None

    def poison(_d: DeadLetter) -> str:
        return "truncated: 3 bytes"

    blanket = plan([plain, product], {}, poison, force=True)
    assert [s.action for s in blanket] == [REPLAY, SKIP]
    assert blanket[1].why == (
        "still does not decode (truncated: 3 bytes); it was forced once already (as "
        "p.conversation.events.dlq[0]@1) and dead-lettered again: fix the cause first, or force it "
        "once more by name: --offset 4 --force"
    )
    assert [s.action for s in plan([product], {}, poison, force=True, named=True)] == [REPLAY]
    assert [s.action for s in plan([product], {}, poison, force=False, named=True)] == [SKIP]
    assert [s.action for s in plan([product], {}, lambda _d: None)] == [REPLAY]  # the cause is fixed
