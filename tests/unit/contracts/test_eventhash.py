"""``event_hash``/``link_event`` give exactly what the generic path gives (hash or error) for every
event of every schema version, including values the fast path hands to the generic one."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerflow.contracts.chain import ZERO_HASH, ChainHead, compute_hash, link
from ledgerflow.contracts.eventhash import event_hash, link_event
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.registry import default_registry
from ledgerflow.policy.wire import chain_key

EVENT_ENTRIES = [e for e in default_registry().entries() if e.is_event]
IDS = [e.file_name for e in EVENT_ENTRIES]
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PREV = "ab" * 32

# Values a careless caller could put anywhere: numbers JCS writes unlike orjson, ints beyond
# JSON's exact range, wrong types, times outside 2000..2200.
ODD = st.sampled_from(
    [
        None,
        1.0,
        -0.0,
        0.5,
        1e-7,
        1e16,
        2.0**60,
        float("inf"),
        float("nan"),
        2**53,
        -(2**60),
        True,
        b"x",
        "é",
        [],
        (),
    ]
)


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return ("ok", fn(*args))
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))


def _generic_hash(event: Event, prev: str) -> str:
    return compute_hash(event.to_json(), prev)


def _generic_link(event: Event, head: ChainHead | None) -> Event:
    linked = link(event.to_json(), head)
    return event.with_chain(linked["sequence"], linked["prev_hash"], linked["hash"])


def _spoil(event: Event, data: st.DataObject) -> Event:
    """``event`` with one envelope or payload field replaced by an odd value (or unchanged)."""
    where = data.draw(st.sampled_from(["none", "envelope", "payload"]))
    if where == "envelope":
        name = data.draw(
            st.sampled_from(
                [
                    "event_id",
                    "tenant",
                    "subject",
                    "producer",
                    "trace_id",
                    "sequence",
                    "prev_hash",
                    "occurred_at",
                    "schema_version",
                ]
            )
        )
        odd = data.draw(ODD | st.integers(-(2**62), 2**62))
        return dataclasses.replace(event, **{name: odd})
    if where == "payload":
        names = [f.name for f in dataclasses.fields(event.payload)]
        name = data.draw(st.sampled_from(names))
        payload = object.__new__(type(event.payload))
        for field in names:
            object.__setattr__(payload, field, getattr(event.payload, field))
        object.__setattr__(payload, name, data.draw(ODD | st.floats() | st.integers()))
        return dataclasses.replace(event, payload=payload)
    return event


@pytest.mark.parametrize("entry", EVENT_ENTRIES, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_event_hash_is_the_generic_hash(entry, data: st.DataObject, strategies) -> None:
    event = _spoil(strategies["event_from_record"](data.draw(strategies["event_record"](entry))), data)
    prev = data.draw(st.sampled_from([PREV, ZERO_HASH, "not hex"]))
    assert _outcome(event_hash, event, prev) == _outcome(_generic_hash, event, prev)


@pytest.mark.parametrize("entry", EVENT_ENTRIES, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_link_event_is_the_generic_link(entry, data: st.DataObject, strategies) -> None:
    event = _spoil(strategies["event_from_record"](data.draw(strategies["event_record"](entry))), data)
    head = data.draw(st.sampled_from([None, "own", "other"]))
    chain_head = None
    if head is not None:
        # the event's own chain when it has one: a spoiled tenant or subject may have none (the
        # compiled chain_key refuses a non-str where Python would format it)
        own = _outcome(chain_key, event) if head == "own" else ("error",)
        key = own[1] if own[0] == "ok" else "someone/else"
        chain_head = ChainHead(key if isinstance(key, str) else "k", 7, PREV)
    assert _outcome(link_event, event, chain_head) == _outcome(_generic_link, event, chain_head)


def test_ordinary_records_take_the_fast_path() -> None:
    """What the policy agent writes never needs the generic path (else nothing is saved)."""
    from ledgerflow.bench.codec import sample_event
    from ledgerflow.contracts import eventhash
    from ledgerflow.kafka.reference import builtin_default_pack
    from ledgerflow.policy import TrainingState
    from ledgerflow.policy.wire import decide

    turn = sample_event()
    decision = decide(turn, b"input", builtin_default_pack(), TrainingState(True, 3), None)
    assert decision is not None
    for event in (turn, decision):
        assert eventhash._body(event)["event_id"] == event.event_id
    assert decision.hash == _generic_hash(decision, ZERO_HASH)
