from __future__ import annotations

import dataclasses
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import avro.io
import avro.schema
import pytest
from fastavro import schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerflow.contracts.codec import (
    MAGIC,
    TOPIC_TYPES,
    UPCASTERS,
    Codec,
    decode,
    decode_dead_letter,
    encode,
    encode_dead_letter,
    fast_codec_loaded,
    reason_code,
    require_fast_codec,
)
from ledgerflow.contracts.events import MAX_CONTENT_BYTES, new_event
from ledgerflow.contracts.payloads import DeadLetter, MessageSubmitted
from ledgerflow.contracts.registry import SchemaEntry, default_registry
from ledgerflow.errors import DecodeError, ValidationError

REGISTRY = default_registry()
EVENT_ENTRIES = [e for e in REGISTRY.entries() if e.is_event]
IDS = [f"{e.type}.v{e.version}" for e in EVENT_ENTRIES]
T0 = 1_795_000_000_000_000  # 2026-11-18
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _message(**changes: Any):
    payload = MessageSubmitted(turn_id="t-1", role="user", content="hello", model="slm-1")
    event = new_event(
        "MessageSubmitted",
        tenant="acme",
        subject="conv-42",
        payload=payload,
        producer="gateway",
        occurred_at_micros=T0,
        event_id="0193a7a4-0000-4000-8000-000000000001",
    )
    return dataclasses.replace(event, **changes)


def _frame(entry: SchemaEntry, record: dict[str, Any]) -> bytes:
    """Bytes as a careless producer would write them: no envelope validation."""
    out = io.BytesIO()
    schemaless_writer(out, entry.wire, record)
    return MAGIC + entry.fingerprint + out.getvalue()


def _raw_record(event, **envelope: Any) -> dict[str, Any]:
    record = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    record["payload"] = event.payload.to_record()
    record.update(envelope)
    return record


# --- round trips -------------------------------------------------------------------


@pytest.mark.parametrize("entry", EVENT_ENTRIES, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_every_schema_version_round_trips_through_the_codec(entry, data, strategies) -> None:
    event = strategies["event_from_record"](data.draw(strategies["event_record"](entry)))
    wire = encode(event)
    assert wire[:10] == MAGIC + entry.fingerprint
    decoded = decode(wire)
    assert decoded == event
    assert encode(decoded) == wire  # byte-stable: re-encoding reproduces the original


@PROPERTY
@given(data=st.data())
def test_dead_letters_round_trip(data, strategies) -> None:
    record = data.draw(strategies["value"](REGISTRY.latest("DeadLetter").schema))
    letter = DeadLetter.from_record(record)
    assert decode_dead_letter(encode_dead_letter(letter)) == letter


# --- cross-check with the Apache reference implementation (the `avro` package) ------


def _to_reference(schema: Any, value: Any) -> Any:
    """Our Avro values -> what the avro package wants (datetimes for timestamp-micros)."""
    if value is None or isinstance(schema, str):
        return value
    if isinstance(schema, list):
        return _to_reference(next(b for b in schema if b != "null"), value)
    if schema.get("logicalType") == "timestamp-micros":
        return EPOCH + timedelta(microseconds=value)
    if schema["type"] == "record":
        return {f["name"]: _to_reference(f["type"], value[f["name"]]) for f in schema["fields"]}
    if schema["type"] == "array":
        return [_to_reference(schema["items"], v) for v in value]
    return value


def _from_reference(schema: Any, value: Any) -> Any:
    if value is None or isinstance(schema, str):
        return value
    if isinstance(schema, list):
        return _from_reference(next(b for b in schema if b != "null"), value)
    if schema.get("logicalType") == "timestamp-micros":
        return (value - EPOCH) // timedelta(microseconds=1)
    if schema["type"] == "record":
        return {f["name"]: _from_reference(f["type"], value[f["name"]]) for f in schema["fields"]}
    if schema["type"] == "array":
        return [_from_reference(schema["items"], v) for v in value]
    return value


@pytest.mark.parametrize("entry", EVENT_ENTRIES, ids=IDS)
@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_reference_avro_bytes_decode_with_our_codec_and_back(entry, data, strategies) -> None:
    record = data.draw(strategies["event_record"](entry))
    reference = avro.schema.parse(json.dumps(entry.schema))  # the .avsc file verbatim
    body = io.BytesIO()
    avro.io.DatumWriter(reference).write(_to_reference(entry.schema, record), avro.io.BinaryEncoder(body))
    expected = strategies["event_from_record"](record)
    # Framed with the spec fingerprint, and with the fingerprint the avro package computes.
    assert decode(MAGIC + entry.fingerprint + body.getvalue()) == expected
    assert decode(MAGIC + reference.fingerprint("CRC-64-AVRO") + body.getvalue()) == expected
    # And the other way: our bytes read by the reference reader.
    ours = encode(expected)
    assert ours[10:] == body.getvalue()
    read = avro.io.DatumReader(reference).read(avro.io.BinaryDecoder(io.BytesIO(ours[10:])))
    assert _from_reference(entry.schema, read) == record


# --- schema evolution -----------------------------------------------------------------


def test_a_v1_message_decodes_into_the_newest_dataclass() -> None:
    v1 = REGISTRY.get("MessageSubmitted", 1)
    event = _message(schema_version=1)
    wire = _frame(
        v1,
        {k: v for k, v in _raw_record(event).items()}
        | {"payload": {k: v for k, v in event.payload.to_record().items() if k != "language"}},
    )
    decoded = decode(wire)
    assert decoded.schema_version == 1
    assert decoded.payload == event.payload  # language=None: v1 could not declare one
    assert encode(decoded) == wire


def test_upcasters_run_for_each_version_step_after_resolution() -> None:
    seen: list[dict[str, Any]] = []

    def guess_undetermined(record: dict[str, Any]) -> dict[str, Any]:
        seen.append(dict(record["payload"]))
        record["payload"]["language"] = "und"
        return record

    codec = Codec(REGISTRY, upcasters={("MessageSubmitted", 1): guess_undetermined})
    decoded = codec.decode(codec.encode(_message(schema_version=1)))
    assert seen and seen[0]["language"] is None  # resolution filled the default first
    assert decoded.payload.language == "und"
    assert codec.decode(codec.encode(_message())).payload.language is None  # v2: no upcast
    assert ("MessageSubmitted", 1) in UPCASTERS


def test_writing_an_older_version_refuses_to_drop_a_set_field() -> None:
    event = _message(schema_version=1)
    with pytest.raises(ValidationError, match="payload.language"):
        encode(dataclasses.replace(event, payload=dataclasses.replace(event.payload, language="en")))


# --- refusing bad events on encode --------------------------------------------------


def test_encode_refuses_an_event_that_breaks_the_envelope() -> None:
    with pytest.raises(ValidationError, match="tenant"):
        encode(_message(tenant=""))


def test_encode_refuses_a_value_outside_the_schema() -> None:
    event = _message()
    bad = dataclasses.replace(event, payload=dataclasses.replace(event.payload, role="robot"))
    with pytest.raises(ValidationError, match="MessageSubmitted: does not fit schema v2"):
        encode(bad)


def test_encode_refuses_an_unknown_schema_version() -> None:
    with pytest.raises(ValidationError, match="has no version 9"):
        encode(_message(schema_version=9))


# --- every DecodeError reason -------------------------------------------------------


def _reason(data: bytes, **kwargs: Any) -> str:
    with pytest.raises(DecodeError) as info:
        decode(data, **kwargs)
    return info.value.reason


@pytest.mark.parametrize("data", [b"", b'{"type": "MessageSubmitted"}', b"\x00\x01" + bytes(20)])
def test_bytes_without_the_magic_are_not_single_object(data: bytes) -> None:
    assert _reason(data).startswith("not-single-object:")


@pytest.mark.parametrize("cut", [1, 2, 9, 11, -1])
def test_cut_off_bytes_are_truncated(cut: int) -> None:
    assert _reason(encode(_message())[:cut]).startswith("truncated:")


def test_an_unregistered_writer_schema_is_unknown_fingerprint() -> None:
    wire = encode(_message())
    reason = _reason(MAGIC + bytes(8) + wire[10:])
    assert reason == "unknown-fingerprint: 0000000000000000 is not in schemas/"


def test_invalid_utf8_is_undecodable() -> None:
    entry = REGISTRY.latest("ConversationClosed")
    body = b"\x04\xff\xfe"  # a 2-byte string that is not UTF-8
    assert _reason(MAGIC + entry.fingerprint + body).startswith("undecodable:")


def test_trailing_bytes_are_undecodable() -> None:
    assert _reason(encode(_message()) + b"\x00").startswith("undecodable: 1 trailing bytes")


def test_a_non_canonical_encoding_is_undecodable() -> None:
    """Bytes no Avro writer produces for a record (union index -1, which fastavro read as the last
    branch) are refused: decoding them would give a record that re-encodes to other bytes."""
    wire = encode(_message(trace_id="t"))
    at = wire.index(b"\x02\x02t")  # trace_id: union index 1 (string), length 1, "t"
    forged = wire[:at] + b"\x01" + wire[at + 1 :]
    assert _reason(forged).startswith("undecodable:")


def test_a_type_not_allowed_on_the_topic_is_wrong_type_for_topic() -> None:
    reason = _reason(encode(_message()), allowed_types=TOPIC_TYPES["policy.decisions"])
    assert reason == "wrong-type-for-topic: MessageSubmitted is not one of PolicyDecision"


def test_a_dead_letter_is_not_an_event() -> None:
    letter = DeadLetter("t", 0, 1, None, b"x", (), "r", "r", T0, "a")
    assert _reason(encode_dead_letter(letter)).startswith("wrong-type-for-topic: DeadLetter")


@pytest.mark.parametrize(
    ("envelope", "detail"),
    [
        ({"event_id": "not-a-uuid"}, "event_id"),
        ({"tenant": ""}, "tenant"),
        ({"occurred_at": 1_700_000_000}, "occurred_at"),  # seconds, not micros
        ({"type": "ConversationClosed"}, "type/schema_version say ConversationClosed v2"),
        ({"schema_version": 1}, "MessageSubmitted v1 but the writer schema is MessageSubmitted v2"),
    ],
)
def test_a_bad_envelope_is_invalid_envelope(envelope: dict[str, Any], detail: str) -> None:
    wire = _frame(REGISTRY.latest("MessageSubmitted"), _raw_record(_message(), **envelope))
    reason = _reason(wire)
    assert reason.startswith("invalid-envelope: ") and detail in reason


def test_oversized_content_is_content_too_large() -> None:
    event = _message()
    big = dataclasses.replace(event.payload, content="é" * (MAX_CONTENT_BYTES // 2 + 1))
    wire = _frame(REGISTRY.latest("MessageSubmitted"), _raw_record(event, payload=big.to_record()))
    assert _reason(wire).startswith("content-too-large: payload.content: 65538 bytes")


def test_dead_letter_decoding_uses_the_same_reasons() -> None:
    with pytest.raises(DecodeError) as info:
        decode_dead_letter(encode(_message()))
    assert info.value.reason.startswith("wrong-type-for-topic:")


def test_reason_code_is_the_prefix() -> None:
    assert reason_code("unknown-fingerprint: 00") == "unknown-fingerprint"
    assert reason_code("invalid-envelope: tenant: must not be empty") == "invalid-envelope"


# --- topics and start-up checks ---------------------------------------------------------


def test_every_event_type_belongs_to_exactly_one_topic() -> None:
    assert set(TOPIC_TYPES) == {
        "conversation.events",
        "policy.rules",
        "policy.decisions",
        "training.commands",
        "training.audit",
        "usage.windows",
        "models.commands",
        "models.audit",
        "identity.audit",
    }
    listed = [t for types in TOPIC_TYPES.values() for t in types]
    assert sorted(listed) == sorted(REGISTRY.event_types)


def test_fastavro_c_extension_is_loaded() -> None:
    assert fast_codec_loaded(), "fastavro fell back to pure Python: reinstall a binary wheel"
    require_fast_codec()


def test_a_buffer_decodes_like_its_bytes() -> None:
    """bytearray and memoryview are decoded (the compiled decoder checks its annotation)."""
    from ledgerflow.bench.codec import sample_event

    data = encode(sample_event())
    assert decode(bytearray(data)) == decode(memoryview(data)) == decode(data)
    letter = DeadLetter("t", 0, 1, None, b"x", (), "r", "r", T0, "a")
    encoded = encode_dead_letter(letter)
    assert decode_dead_letter(bytearray(encoded)) == decode_dead_letter(encoded)
