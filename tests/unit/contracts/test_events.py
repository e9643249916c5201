from __future__ import annotations

import dataclasses
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.contracts.events import (
    MAX_CONTENT_BYTES,
    ContentTooLarge,
    Event,
    derived_event_id,
    new_event,
    validate_envelope,
)
from ledgerflow.contracts.payloads import PolicyDecision, Redaction, UsageWindow
from ledgerflow.errors import ValidationError

NOW = 1_795_000_000_000_000  # 2026-11-18T11:06:40Z
EVENING = 1_794_945_600_000_000  # 2026-11-17T20:00:00Z
FIXED_ID = "0193a7a4-0000-4000-8000-000000000001"


def _json(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "event_id": FIXED_ID,
        "type": "MessageSubmitted",
        "tenant": "acme",
        "subject": "conv-42",
        "occurred_at": "2026-11-17T20:00:00.000000Z",
        "producer": "gateway",
        "trace_id": None,
        "payload": {"turn_id": "t-1", "role": "user", "content": "hello", "model": "slm-1", "tokens": None},
    }
    for key, value in changes.items():
        if value is _DROP:
            obj.pop(key)
        else:
            obj[key] = value
    return obj


_DROP = object()


def _error(obj: Any, **kwargs: Any) -> str:
    with pytest.raises(ValidationError) as info:
        Event.from_json(obj, now_micros=NOW, **kwargs)
    return str(info.value)


def test_from_json_builds_the_event_of_the_design_example() -> None:
    event = Event.from_json(_json(), now_micros=NOW)
    assert event.occurred_at == EVENING
    assert event.event_id == FIXED_ID
    assert event.schema_version == 2
    assert event.payload.role == "user" and event.payload.language is None


def test_occurred_at_json_parses_to_exact_microseconds() -> None:
    event = Event.from_json(_json(occurred_at="2026-11-17T20:00:00.000001Z"), now_micros=NOW)
    assert event.occurred_at == EVENING + 1
    assert event.to_json()["occurred_at"] == "2026-11-17T20:00:00.000001Z"


def test_to_json_then_from_json_is_the_same_event() -> None:
    event = Event.from_json(_json(), now_micros=NOW)
    assert Event.from_json(event.to_json(), now_micros=NOW) == event
    assert list(event.to_json())[-1] == "payload"


def test_absent_event_id_and_occurred_at_are_filled_in() -> None:
    event = Event.from_json(
        _json(event_id=_DROP, occurred_at=_DROP, producer=_DROP),
        now_micros=NOW,
        id_factory=lambda: FIXED_ID,
    )
    assert (event.event_id, event.occurred_at, event.producer) == (FIXED_ID, NOW, "edge")


def test_uppercase_event_id_is_normalised() -> None:
    assert Event.from_json(_json(event_id=FIXED_ID.upper()), now_micros=NOW).event_id == FIXED_ID


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"type": "MessageSent"}, "type: 'MessageSent' is not an event type"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"event_id": "1234"}, "event_id: '1234' is not a lowercase canonical UUID"),
        ({"tenant": ""}, "tenant: must not be empty"),
        ({"subject": "   "}, "subject: must not be empty"),
        ({"tenant": _DROP}, "tenant: required field is missing"),
        ({"occurred_at": "yesterday"}, "occurred_at: 'yesterday' is not a timestamp"),
        ({"occurred_at": "2026-11-17T20:00:00"}, "occurred_at: '2026-11-17T20:00:00' has no time zone"),
        ({"occurred_at": "1999-12-31T23:59:59Z"}, "occurred_at: 946684799000000 is outside"),
        ({"occurred_at": "2026-11-19T11:06:41Z"}, "occurred_at: 2026-11-19T11:06:41Z is more than a day"),
        ({"occurred_at": 1795000000}, "occurred_at: expected a string"),
        ({"payload": _DROP}, "payload: required field is missing"),
        ({"payload": []}, "payload: expected an object"),
        ({"sequence": 3}, "sequence: set only by ledgerflow agents"),
        ({"hash": "ab"}, "hash: set only by ledgerflow agents"),
        ({"schema_version": 3}, "schema_version: 3 is not a version of MessageSubmitted (1..2)"),
        ({"trace_id": 5}, "trace_id: expected str or null"),
    ],
)
def test_from_json_names_the_bad_envelope_field(changes: dict[str, Any], message: str) -> None:
    assert message in _error(_json(**changes))


@pytest.mark.parametrize(
    ("payload_changes", "message"),
    [
        ({"role": "system"}, "payload.role: 'system' is not one of user|assistant|tool"),
        ({"turn_id": None}, "payload.turn_id: expected string, got null"),
        ({"content": 5}, "payload.content: expected string, got int"),
        ({"tokens": True}, "payload.tokens: expected int, got bool"),
        ({"tokens": 2**31}, "payload.tokens: 2147483648 does not fit in an Avro int"),
        ({"mood": "happy"}, "payload.mood: unknown field"),
    ],
)
def test_from_json_names_the_bad_payload_field(payload_changes: dict[str, Any], message: str) -> None:
    obj = _json()
    obj["payload"].update(payload_changes)
    assert message in _error(obj)


def test_from_json_requires_every_field_without_a_default() -> None:
    obj = _json()
    del obj["payload"]["model"]
    assert "payload.model: required field is missing" in _error(obj)
    del obj["payload"]["tokens"]  # nullable with a default: may be left out
    obj["payload"]["model"] = "slm-1"
    assert Event.from_json(obj, now_micros=NOW).payload.tokens is None


def test_from_json_refuses_content_over_the_limit_in_utf8_bytes() -> None:
    obj = _json()
    obj["payload"]["content"] = "€" * (MAX_CONTENT_BYTES // 3 + 1)  # 3 bytes each
    with pytest.raises(ContentTooLarge, match="payload.content: 65538 bytes of UTF-8"):
        Event.from_json(obj, now_micros=NOW)
    obj["payload"]["content"] = "a" * MAX_CONTENT_BYTES
    assert Event.from_json(obj, now_micros=NOW)


def test_from_json_accepts_chain_fields_when_reading_back_our_own_json() -> None:
    obj = _json(sequence=3, prev_hash="0" * 64, hash="f" * 64)
    event = Event.from_json(obj, now_micros=NOW, accept_chain_fields=True)
    assert (event.sequence, event.prev_hash, event.hash) == (3, "0" * 64, "f" * 64)


def test_from_json_refuses_a_non_object() -> None:
    assert "expected a JSON object" in _error(["not", "an", "object"])


DEEP = [[]]
for _ in range(1000):  # as deep as a JSON body the edge parses (orjson: up to 1024 levels)
    DEEP = [DEEP]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("type", [], "type: a JSON array of 0 items is not an event type"),
        ("type", {"a": 1}, "type: a JSON object of 1 member is not an event type"),
        ("type", DEEP, "type: a JSON array of 1 item is not an event type"),
        ("type", "x" * 100_000, "type: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is not an event type"),
        ("schema_version", DEEP, "schema_version: a JSON array of 1 item is not a version"),
        ("event_id", DEEP, "event_id: a JSON array of 1 item is not a lowercase canonical UUID"),
    ],
)
def test_from_json_quotes_a_hostile_value_in_one_short_line(field: str, value: Any, message: str) -> None:
    """Before: a list or object as ``type`` raised TypeError (unhashable) and a value nested a
    thousand levels RecursionError (its repr), each a 500 at the edge; a long string was quoted whole."""
    error = _error(_json(**{field: value}))
    assert message in error
    assert len(error) < 600 and "\n" not in error  # the known types are listed: ~400 characters


@pytest.mark.parametrize("value", [DEEP, "x" * 100_000])
def test_from_json_quotes_a_hostile_enum_value_in_one_short_line(value: Any) -> None:
    obj = _json()
    obj["payload"]["role"] = value
    error = _error(obj)
    assert error.startswith("payload.role: ") and "is not one of user|assistant|tool" in error
    assert len(error) < 300


def _decision() -> Event:
    payload = PolicyDecision(
        input_event_id=FIXED_ID,
        input_hash=None,
        conversation_id="conv-42",
        outcome="redact",
        score=0.5,
        matched_rules=("pii.email",),
        rule_pack_version=3,
        constitution_hash="ab" * 32,
        training_version=1,
        training_enabled=False,
        redactions=(Redaction(0, 5),),
    )
    return new_event(
        "PolicyDecision",
        tenant="acme",
        subject="conv-42",
        payload=payload,
        producer="policy-agent",
        occurred_at_micros=NOW,
        event_id=derived_event_id("policy", FIXED_ID),
    )


def test_to_json_nests_records_and_renders_payload_timestamps() -> None:
    assert _decision().to_json()["payload"]["redactions"] == [{"start": 0, "end": 5}]
    usage = new_event(
        "UsageWindow",
        tenant="acme",
        subject="acme",
        producer="usage-agent",
        occurred_at_micros=NOW,
        payload=UsageWindow("slm-1", NOW, NOW + 60_000_000, 10, 1, 0, False, 0),
    )
    shown = usage.to_json()["payload"]
    assert (shown["window_start"], shown["window_end"]) == (
        "2026-11-18T11:06:40.000000Z",
        "2026-11-18T11:07:40.000000Z",
    )
    assert Event.from_json(usage.to_json(), now_micros=NOW) == usage


def test_derived_event_ids_are_deterministic_uuids() -> None:
    assert derived_event_id("policy", FIXED_ID) == derived_event_id("policy", FIXED_ID)
    assert derived_event_id("policy", FIXED_ID) != derived_event_id("usage", FIXED_ID)
    assert _decision().event_id == derived_event_id("policy", FIXED_ID)


@settings(max_examples=300)
@given(st.lists(st.text(), min_size=1, max_size=4))
def test_derived_event_ids_are_the_standard_uuid5_of_the_joined_parts(parts: list[str]) -> None:
    """Every id ever derived is on the logs: the written-out uuid5 must give uuid.uuid5's string."""
    expected = str(uuid.uuid5(uuid.UUID("6f1c3c52-5d0e-4a52-9d55-2f1f0c2f7a10"), "\x1f".join(parts)))
    assert derived_event_id(*parts) == expected


def test_with_chain_sets_only_the_chain_fields() -> None:
    event = _decision()
    chained = event.with_chain(1, "0" * 64, "a" * 64)
    assert (chained.sequence, chained.prev_hash, chained.hash) == (1, "0" * 64, "a" * 64)
    assert chained.payload is event.payload and event.sequence is None
    traced = dataclasses.replace(event, trace_id="t" * 32)  # every field set, so none can go missing
    copied = traced.with_chain(1, "0" * 64, "a" * 64)
    chain_fields = {"sequence", "prev_hash", "hash"}
    for f in dataclasses.fields(Event):
        if f.name not in chain_fields:
            assert getattr(copied, f.name) == getattr(traced, f.name), f"with_chain dropped {f.name}"


def test_new_event_refuses_a_payload_of_another_type() -> None:
    with pytest.raises(ValidationError, match="does not match the payload"):
        new_event(
            "MessageSubmitted",
            tenant="a",
            subject="s",
            producer="p",
            occurred_at_micros=NOW,
            payload=_decision().payload,
        )


def test_validate_envelope_refuses_a_sequence_below_one() -> None:
    with pytest.raises(ValidationError, match="sequence: 0 must be 1 or more"):
        validate_envelope(_decision().with_chain(0, "0" * 64, "a" * 64))


def test_json_of_an_old_version_keeps_its_own_fields_so_hashes_stay_valid() -> None:
    v1 = Event.from_json(_json(schema_version=1), now_micros=NOW)
    assert v1.schema_version == 1 and v1.payload.language is None  # upcast to the newest dataclass
    assert "language" not in v1.to_json()["payload"]  # rendered as written
    assert Event.from_json(v1.to_json(), now_micros=NOW) == v1
    v2 = Event.from_json(_json(), now_micros=NOW)
    assert v2.to_json()["payload"]["language"] is None


def test_a_field_of_a_newer_version_is_refused_in_an_older_one() -> None:
    obj = _json(schema_version=1)
    obj["payload"]["language"] = "en"
    assert "payload.language: unknown field" in _error(obj)
