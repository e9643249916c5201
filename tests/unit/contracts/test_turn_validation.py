"""What the edge and the agents both refuse in a turn: ids outside the grammar, token counts
out of range, a model that is not a printable string (validate_envelope / validate_turn)."""

from __future__ import annotations

import dataclasses
import uuid
from io import BytesIO

import pytest
from fastavro import schemaless_writer

from ledgerflow.contracts.codec import MAGIC, decode
from ledgerflow.contracts.events import MAX_TOKENS, Event, validate_envelope, validate_turn
from ledgerflow.contracts.payloads import MessageSubmitted, RulePackPublished
from ledgerflow.contracts.registry import default_registry
from ledgerflow.errors import DecodeError, ValidationError

T0 = 1_780_000_000_000_000
TURN = MessageSubmitted("t1", "user", "hello", "slm-1", 3)


def _event(payload: object = TURN, **envelope: object) -> Event:
    fields = dict(
        event_id=str(uuid.uuid4()),
        type=type(payload).TYPE,  # type: ignore[attr-defined]
        schema_version=default_registry().latest(type(payload).TYPE).version,  # type: ignore[attr-defined]
        tenant="acme",
        subject="conv-1",
        occurred_at=T0,
        producer="gateway",
        payload=payload,
    )
    return Event(**(fields | envelope))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tokens": -1}, "payload.tokens: -1 is outside 0..10000000"),
        ({"tokens": MAX_TOKENS + 1}, "payload.tokens: 10000001 is outside"),
        ({"tokens": True}, "payload.tokens: expected an integer"),
        ({"model": {"name": "x"}}, "payload.model: expected a string, got dict"),
        ({"model": ""}, "payload.model: must not be empty"),
        ({"model": "a\r\nb"}, "payload.model: 'a\\r\\nb' contains control characters"),
        ({"turn_id": "t/1"}, "payload.turn_id: 't/1' is not an id"),
        ({"turn_id": "会话"}, "payload.turn_id"),
        ({"language": "x" * 65}, "payload.language: longer than 64"),
    ],
)
def test_a_turn_out_of_range_is_refused_naming_the_field(change: dict, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_turn(dataclasses.replace(TURN, **change))
    assert message in str(caught.value)


def test_zero_and_the_maximum_token_counts_are_valid() -> None:
    validate_turn(dataclasses.replace(TURN, tokens=0))
    validate_turn(dataclasses.replace(TURN, tokens=MAX_TOKENS))
    validate_turn(dataclasses.replace(TURN, tokens=None))


@pytest.mark.parametrize(
    ("field", "value"),
    [("tenant", "X}:a"), ("subject", "会话-1"), ("subject", "a\r\nb"), ("subject", "c/1"), ("tenant", "*")],
)
def test_ids_outside_the_grammar_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        validate_envelope(_event(**{field: value}))


def test_only_the_default_rule_pack_may_use_the_star_tenant() -> None:
    validate_envelope(_event(RulePackPublished(1, "h" * 64, "{}"), tenant="*", subject="*"))


def test_a_negative_token_count_written_straight_to_kafka_does_not_decode() -> None:
    entry = default_registry().latest("MessageSubmitted")
    record = {
        "event_id": str(uuid.uuid4()),
        "type": "MessageSubmitted",
        "schema_version": entry.version,
        "tenant": "acme",
        "subject": "conv-1",
        "occurred_at": T0,
        "producer": "gw",
        "trace_id": None,
        "sequence": None,
        "prev_hash": None,
        "hash": None,
        "payload": {
            "turn_id": "t",
            "role": "user",
            "content": "x",
            "model": "m",
            "tokens": -1,
            "language": None,
        },
    }
    out = BytesIO()
    out.write(MAGIC + entry.fingerprint)
    schemaless_writer(out, entry.wire, record)
    with pytest.raises(DecodeError, match="invalid-envelope: payload.tokens: -1"):
        decode(out.getvalue())
