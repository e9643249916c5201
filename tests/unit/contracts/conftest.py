"""Hypothesis strategies generated from the Avro schemas themselves."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import strategies as st

from ledgerflow.contracts.events import (
    MAX_OCCURRED_AT,
    MAX_TOKENS,
    MAX_WINDOW_MICROS,
    MIN_OCCURRED_AT,
    Event,
)
from ledgerflow.contracts.payloads import PAYLOAD_TYPES
from ledgerflow.contracts.registry import SchemaEntry

_PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "double": st.floats(allow_nan=False),
    "string": st.text(max_size=20),
    "bytes": st.binary(max_size=20),
}
_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,19}", fullmatch=True)  # the id grammar
_PRODUCER = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "")
_TEXT = st.text(min_size=1, max_size=20).filter(lambda s: s.strip() != "" and s.isprintable())
_PAYLOAD_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    # What validate_envelope checks beyond the schema: ids, ranges, printable text.
    "MessageSubmitted": {
        "turn_id": _ID,
        "model": _TEXT,
        "tokens": st.none() | st.integers(0, 10_000_000),
        "language": st.none() | _TEXT,
    },
    "ConversationStarted": {"actor": _TEXT, "model": _TEXT},
}


_COUNT = st.integers(0, 2**63 - 1)


def _usage_window(model: st.SearchStrategy[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A ``UsageWindow`` payload ``validate_usage_window`` takes: a window of at most a day, counts
    of 0 or more, or a ``LateUsage`` delta (revision -1: one turn)."""

    def of(start: int) -> st.SearchStrategy[dict[str, Any]]:
        common = {
            "model": model,
            "window_start": st.just(start),
            "window_end": st.integers(start + 1, start + MAX_WINDOW_MICROS),
            "estimated_tokens": _COUNT,
            "correction": st.booleans(),
        }
        window = {"tokens": _COUNT, "events": _COUNT, "revision": st.integers(0, 2**31 - 1)}
        delta = {"tokens": st.integers(0, MAX_TOKENS), "events": st.just(1), "revision": st.just(-1)}
        return st.fixed_dictionaries({**common, **window}) | st.fixed_dictionaries({**common, **delta})

    return st.integers(MIN_OCCURRED_AT - MAX_WINDOW_MICROS, MAX_OCCURRED_AT - 1).flatmap(of)


def value_strategy(schema: Any) -> st.SearchStrategy[Any]:
    """Any value valid for ``schema`` (record dicts, ints for timestamps)."""
    if isinstance(schema, list):
        return st.one_of(*[value_strategy(branch) for branch in schema])
    if isinstance(schema, str):
        return _PRIMITIVES[schema]
    logical = schema.get("logicalType")
    if logical == "timestamp-micros":
        return st.integers(MIN_OCCURRED_AT, MAX_OCCURRED_AT - 1)
    if logical == "uuid":
        return st.uuids().map(str)
    kind = schema["type"]
    if kind == "record":
        return st.fixed_dictionaries({f["name"]: value_strategy(f["type"]) for f in schema["fields"]})
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(value_strategy(schema["items"]), max_size=3)
    return _PRIMITIVES[kind]


def event_record_strategy(entry: SchemaEntry) -> st.SearchStrategy[dict[str, Any]]:
    """A full record of ``entry`` whose envelope also passes validate_envelope."""
    fields = {f["name"]: value_strategy(f["type"]) for f in entry.schema["fields"]}
    overrides = _PAYLOAD_FIELDS.get(entry.type)
    if entry.type == "UsageWindow":
        fields["payload"] = _usage_window(st.text(max_size=20))
    elif overrides:
        payload_schema = next(f["type"] for f in entry.schema["fields"] if f["name"] == "payload")
        fields["payload"] = st.fixed_dictionaries(
            {f["name"]: overrides.get(f["name"], value_strategy(f["type"])) for f in payload_schema["fields"]}
        )
    fields.update(
        type=st.just(entry.type),
        schema_version=st.just(entry.version),
        tenant=_ID,
        subject=_ID,
        producer=_PRODUCER,
        sequence=st.none() | st.integers(1, 2**63 - 1),
    )
    return st.fixed_dictionaries(fields)


def event_from_record(record: dict[str, Any]) -> Event:
    payload = dict(record["payload"])
    cls = PAYLOAD_TYPES[record["type"]]
    for field in dataclasses.fields(cls):
        payload.setdefault(field.name, field.default)  # fields newer than this version
    envelope = {k: v for k, v in record.items() if k != "payload"}
    return Event(**envelope, payload=cls.from_record(payload))


@pytest.fixture(scope="session")
def strategies() -> dict[str, Callable[..., Any]]:
    return {
        "value": value_strategy,
        "event_record": event_record_strategy,
        "event_from_record": event_from_record,
    }
