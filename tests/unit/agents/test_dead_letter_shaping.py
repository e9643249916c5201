"""Dead letters always fit: shaping is pure, so every bound is checked here without Kafka."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.contracts.codec import decode_dead_letter, encode, encode_dead_letter
from ledgerflow.contracts.deadletters import (
    MAX_DEAD_LETTER_BYTES,
    MAX_DEAD_LETTER_HEADER_BYTES,
    MAX_DEAD_LETTER_KEY_BYTES,
    evaluation_failed,
    shape_dead_letter,
)
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.inputs import decode_input
from ledgerflow.contracts.payloads import DeadLetter, MessageSubmitted
from ledgerflow.errors import DecodeError
from ledgerflow.limits import MAX_DEAD_LETTER_PREFIX_BYTES, MAX_INPUT_RECORD_BYTES, PRODUCER_MAX_REQUEST_BYTES

T0 = 1_780_000_000_000_000


def _shape(
    value: bytes | None, key: bytes | None = b"conv-1", headers=(), reason="undecodable: x"
) -> DeadLetter:
    return shape_dead_letter(
        source_topic="conversation.events",
        partition=3,
        offset=41,
        key=key,
        value=value,
        headers=headers,
        reason=reason,
        agent="policy",
        failed_at=T0,
    )


def test_a_small_value_is_kept_whole_with_its_digest_and_size() -> None:
    letter = _shape(b"not avro", headers=[("h", b"v"), ("empty", None)])
    assert letter.value == b"not avro" and not letter.value_truncated
    assert letter.value_sha256 == hashlib.sha256(b"not avro").hexdigest() and letter.value_size == 8
    assert letter.headers == (("h", b"v"), ("empty", None)) and letter.headers_dropped == 0
    assert decode_dead_letter(encode_dead_letter(letter)) == letter


def test_the_one_megabyte_turn_of_issue_11_is_kept_by_reference() -> None:
    value = b"\xc3\x01" + b"x" * (1_000_118 - 2)
    letter = _shape(value)
    assert letter.value == value[:MAX_DEAD_LETTER_PREFIX_BYTES] and letter.value_truncated
    assert (letter.value_size, letter.value_sha256) == (1_000_118, hashlib.sha256(value).hexdigest())
    assert (letter.partition, letter.offset, letter.source_topic) == (3, 41, "conversation.events")
    assert len(encode_dead_letter(letter)) < 8 * 1024


def test_a_value_at_the_input_limit_is_whole_one_byte_more_is_a_prefix() -> None:
    assert not _shape(b"a" * MAX_INPUT_RECORD_BYTES).value_truncated
    assert _shape(b"a" * (MAX_INPUT_RECORD_BYTES + 1)).value_truncated


def test_huge_keys_headers_and_reasons_are_cut_and_marked() -> None:
    headers = [(f"h{i}", b"v" * 100) for i in range(2000)]
    letter = _shape(b"v", key=b"k" * 1_000_000, headers=headers, reason="evaluation-failed: " + "r" * 10**6)
    assert letter.key == b"k" * MAX_DEAD_LETTER_KEY_BYTES and letter.key_truncated
    kept = sum(len(n) + len(v or b"") for n, v in letter.headers)
    assert kept <= MAX_DEAD_LETTER_HEADER_BYTES and letter.headers_dropped == 2000 - len(letter.headers)
    assert len(letter.reason) <= 2000 and letter.reason_code == "evaluation-failed"


@settings(max_examples=30, deadline=None)
@given(
    value=st.binary(max_size=64) | st.integers(0, 3 * 1024 * 1024).map(lambda n: b"z" * n),
    key=st.none() | st.binary(max_size=4096),
    headers=st.lists(st.tuples(st.text(max_size=300), st.none() | st.binary(max_size=5000)), max_size=50),
)
def test_every_dead_letter_fits_whatever_the_input(value: bytes, key: bytes | None, headers: list) -> None:
    encoded = encode_dead_letter(_shape(value, key=key, headers=headers))
    assert len(encoded) <= MAX_DEAD_LETTER_BYTES < PRODUCER_MAX_REQUEST_BYTES


def test_a_v1_dead_letter_reads_back_with_digest_and_size() -> None:
    letter = DeadLetter("t", 0, 1, None, b"abc", (), "truncated: x", "truncated", T0, "policy")
    from ledgerflow.contracts.registry import default_registry

    entry = default_registry().get("DeadLetter", 1)
    from io import BytesIO

    from fastavro import schemaless_writer

    out = BytesIO()
    out.write(b"\xc3\x01" + entry.fingerprint)
    record = {k: v for k, v in letter.to_record().items() if k in {f["name"] for f in entry.schema["fields"]}}
    schemaless_writer(out, entry.wire, record)
    back = decode_dead_letter(out.getvalue())
    assert (back.value_sha256, back.value_size, back.value_truncated) == (
        hashlib.sha256(b"abc").hexdigest(),
        3,
        False,
    )


def _turn(**payload: object) -> bytes:
    fields = {"turn_id": "t1", "role": "user", "content": "hi", "model": "slm-1", "tokens": 3} | payload
    event = new_event(
        "MessageSubmitted",
        tenant="acme",
        subject="conv-1",
        producer="gw",
        payload=MessageSubmitted(**fields),  # type: ignore[arg-type]
        occurred_at_micros=T0,
        event_id=str(uuid.uuid4()),
    )
    return encode(event)


def test_decode_input_refuses_an_oversized_record_without_decoding_it() -> None:
    with pytest.raises(DecodeError, match="record-too-large: the value is 262145 bytes"):
        decode_input(b"\xc3\x01" + b"\x00" * (MAX_INPUT_RECORD_BYTES - 1), b"conv-1", "conversation.events")


def test_decode_input_checks_the_key_and_accepts_a_good_turn() -> None:
    assert decode_input(_turn(), b"conv-1", "conversation.events").subject == "conv-1"
    with pytest.raises(DecodeError, match="invalid-envelope: subject"):
        decode_input(_turn(), b"other", "conversation.events")


def test_evaluation_failed_names_the_exception() -> None:
    assert evaluation_failed(ValueError("boom")) == "evaluation-failed: ValueError: boom"


def test_dlq_list_and_show_name_the_original_size_digest_and_truncation() -> None:
    from ledgerflow.dlq import LocatedDeadLetter, format_detail, format_table, to_json

    value = b"\xc3\x01" + b"x" * (1_000_118 - 2)
    located = LocatedDeadLetter("conversation.events.dlq", 0, 7, _shape(value), b"")
    row = format_table([located]).splitlines()[1]
    assert row.endswith(f"1000118 (kept {MAX_DEAD_LETTER_PREFIX_BYTES})")
    detail = format_detail(located)
    assert "value size      1000118 bytes" in detail and hashlib.sha256(value).hexdigest() in detail
    assert "first 4096 bytes only" in detail
    doc = to_json(located)
    assert (doc["value_size"], doc["value_kept_bytes"], doc["value_truncated"]) == (1_000_118, 4096, True)
