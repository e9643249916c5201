"""The conversation view a reader gets from the raw read-model values."""

from __future__ import annotations

import orjson

from ledgerflow.projections.views import conversation_view, decisions_by_event, parse_turns


def test_view_types_counters_and_attaches_each_turns_decision() -> None:
    decision = {"event_id": "d1", "input_event_id": "e1", "outcome": "deny"}
    fields = {
        b"status": b"open",
        b"turns": b"2",
        b"tokens": b"17",
        b"started_at": b"5",
        b"last_decision": orjson.dumps(decision),
    }
    turns = [
        orjson.dumps({"event_id": "e1", "content": "a"}),
        orjson.dumps({"event_id": "e2", "content": "b"}),
    ]
    view = conversation_view(
        fields, parse_turns(turns), decisions_by_event(["e1", "e2"], [orjson.dumps(decision), None])
    )
    assert (view["status"], view["turn_count"], view["tokens"]) == ("open", 2, 17)
    assert view["started_at"] == "1970-01-01T00:00:00.000005Z"  # integer µs in Redis, RFC 3339 out
    assert view["last_decision"] == decision
    assert [(t["content"], t["decision"]) for t in view["turns"]] == [("a", decision), ("b", None)]


def test_view_of_a_conversation_without_turns_has_an_empty_list() -> None:
    view = conversation_view({b"status": b"open"}, [], {})
    assert (view["turn_count"], view["turns"]) == (0, [])
