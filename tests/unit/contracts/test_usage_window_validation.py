"""A ``UsageWindow`` is refused unless its numbers are what the usage agent can write
(``validate_usage_window``): records written to Kafka directly reach the read models, which *add*
``LateUsage`` deltas into Redis's 64-bit counters and show window bounds as dates."""

from __future__ import annotations

import dataclasses
import uuid
from io import BytesIO
from typing import Any

import pytest
from fastavro import schemaless_writer

from ledgerflow.contracts.codec import MAGIC, decode, encode
from ledgerflow.contracts.events import (
    MAX_OCCURRED_AT,
    MAX_TOKENS,
    MAX_WINDOW_MICROS,
    MIN_OCCURRED_AT,
    new_event,
    validate_usage_window,
)
from ledgerflow.contracts.payloads import UsageWindow
from ledgerflow.contracts.registry import default_registry
from ledgerflow.errors import DecodeError, ValidationError
from ledgerflow.usage.windows import WindowConfig, window_bounds

T0 = 1_780_000_020_000_000
MINUTE = 60_000_000
WINDOW = UsageWindow("slm-1", T0, T0 + MINUTE, 120, 3, 0, False, 0)
DELTA = UsageWindow("slm-1", T0, T0 + MINUTE, MAX_TOKENS, 1, 0, True, -1)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"window_start": 10**18, "window_end": 10**18 + MINUTE},
            "payload.window_start: 1000000000000000000 ",
        ),
        ({"window_start": 0, "window_end": MINUTE}, "payload.window_start: 0 is outside"),
        ({"window_start": MAX_OCCURRED_AT, "window_end": MAX_OCCURRED_AT + 1}, "payload.window_start: "),
        ({"window_end": T0}, "payload.window_end: "),
        ({"window_end": T0 - 1}, "payload.window_end: "),
        ({"window_end": T0 + MAX_WINDOW_MICROS + 1}, "payload.window_end: "),
        ({"tokens": -1}, "payload.tokens: -1 is negative"),
        ({"events": -5}, "payload.events: -5 is negative"),
        ({"estimated_tokens": -(2**63)}, "payload.estimated_tokens: "),
        ({"revision": -2}, "payload.revision: -2 is below -1"),
    ],
)
def test_a_window_out_of_range_is_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match="^" + message):
        validate_usage_window(dataclasses.replace(WINDOW, **change))


@pytest.mark.parametrize(
    "change",
    [{"tokens": MAX_TOKENS + 1}, {"tokens": 2**63 - 1}, {"events": 2}, {"events": 2**63 - 1}, {"events": 0}],
)
def test_a_late_usage_delta_counts_one_turn(change: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="^payload: a LateUsage delta"):
        validate_usage_window(dataclasses.replace(DELTA, **change))


def test_what_the_usage_agent_writes_is_valid() -> None:
    validate_usage_window(WINDOW)
    validate_usage_window(DELTA)
    validate_usage_window(dataclasses.replace(DELTA, tokens=0))
    # A window's totals are set, not added: any count the sums of turns reach.
    validate_usage_window(dataclasses.replace(WINDOW, tokens=2**63 - 1, events=2**63 - 1, revision=2**31 - 1))
    # The windows of the first and the last turn the envelope allows, at the smallest and the
    # largest window size, and at one that does not divide 2000-01-01 (its window starts before).
    for size in (1_000, MAX_WINDOW_MICROS, MAX_WINDOW_MICROS - 7):
        for at in (MIN_OCCURRED_AT, MAX_OCCURRED_AT - 1):
            start, end = window_bounds(WindowConfig(size_micros=size), at)
            validate_usage_window(dataclasses.replace(WINDOW, window_start=start, window_end=end))


def test_a_hostile_delta_written_straight_to_kafka_does_not_decode() -> None:
    entry = default_registry().latest("UsageWindow")
    record = {
        "event_id": str(uuid.uuid4()),
        "type": "UsageWindow",
        "schema_version": entry.version,
        "tenant": "acme",
        "subject": "acme",
        "occurred_at": T0,
        "producer": "ledgerflow-usage/p0",
        "trace_id": None,
        "sequence": None,
        "prev_hash": None,
        "hash": None,
        "payload": {**DELTA.to_record(), "tokens": 2**63 - 1},
    }
    out = BytesIO()
    out.write(MAGIC + entry.fingerprint)
    schemaless_writer(out, entry.wire, record)
    with pytest.raises(DecodeError, match="^invalid-envelope: payload: a LateUsage delta"):
        decode(out.getvalue())
    good = new_event(
        "UsageWindow", tenant="acme", subject="acme", producer="p", payload=WINDOW, occurred_at_micros=T0
    )
    assert decode(encode(good)) == good
