"""The pure parts of the CLI verbs: tail's rendering, policy diffs, the replay plan, progress lines."""

from __future__ import annotations

import io
import json

import pytest

from ledgerflow.commands.policy import diff_lines, format_list, pick
from ledgerflow.commands.progress import PlainProgress, bar
from ledgerflow.commands.tail import RECONNECT_S, refusal_wait, render, stream_path
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.dlq.replay import REPLAY, SKIP, Filters, format_steps, plan, replay_tag, selected
from ledgerflow.kafka.deadletters import LocatedDeadLetter
from ledgerflow.sse_client import SseEvent
from ledgerflow.timefmt import rfc3339, rfc3339_seconds


def test_rfc3339_has_microseconds_and_z() -> None:
    assert rfc3339(1_764_460_000_123_456) == "2025-11-29T23:46:40.123456Z"
    assert rfc3339(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339_seconds(1.5) == "1970-01-01T00:00:01.500000Z"


def test_stream_path_quotes_the_conversation() -> None:
    assert stream_path(None) == "/v1/streams/tenant"
    assert stream_path("a b/c") == "/v1/conversation/stream?conversation_id=a%20b%2Fc"


def test_render_pretty_json_and_silent_frames() -> None:
    event = {
        "occurred_at": "2026-01-01T00:00:00.000000Z",
        "subject": "c1",
        "payload": {"role": "user", "turn_id": "t1", "content": "hello\n  there " * 20},
    }
    line = render(SseEvent("MessageSubmitted", json.dumps(event), "e1:3"), as_json=False)
    assert line is not None and line.startswith(
        "2026-01-01T00:00:00.000000Z  MessageSubmitted    c1  user t1: hello there"
    )
    assert "\n" not in line and line.endswith("…")
    decision = {
        "subject": "c1",
        "payload": {"outcome": "deny", "score": 9.0, "matched_rules": ["r1"], "rule_pack_version": 2},
    }
    assert render(SseEvent("PolicyDecision", json.dumps(decision), "d1:0"), as_json=False).endswith(
        "c1  deny score 9.0 rules r1 (pack v2)"
    )
    assert (
        render(SseEvent("reset", '{"reason": "unknown cursor"}', None), as_json=False)
        == "-- reset: unknown cursor"
    )
    assert render(SseEvent("heartbeat", "{}", None), as_json=False) is None
    assert render(SseEvent("", "", "e1:3"), as_json=False) is None  # a checkpoint
    assert json.loads(render(SseEvent("shutdown", '{"detail": "x"}', None), as_json=True) or "") == {
        "id": None,
        "event": "shutdown",
        "data": {"detail": "x"},
    }
    assert render(SseEvent("X", "not json", "e"), as_json=False) == "X 'not json'"


def test_tail_waits_out_a_refused_reconnect_but_not_a_refused_first_connection() -> None:
    assert refusal_wait(429, "5", connected=True) == 5.0
    assert refusal_wait(503, "", connected=True) == RECONNECT_S
    assert refusal_wait(503, "86400", connected=True) == 60.0  # bounded
    assert refusal_wait(503, "5", connected=False) is None  # the first connection fails at once
    for status in (400, 401, 403, 404, 422, 500):
        assert refusal_wait(status, "5", connected=True) is None


def test_policy_diff_ignores_the_version_and_key_order() -> None:
    a = {"tenant": "acme", "version": 1, "rules": [{"id": "r", "action": "deny"}]}
    b = {"rules": [{"action": "deny", "id": "r"}], "tenant": "acme", "version": 7}
    assert diff_lines(a, b, "v1", "v7") == []
    changed = diff_lines(a, {**a, "rules": [{"id": "r", "action": "review"}]}, "v1", "file")
    assert changed[:2] == ["--- v1", "+++ file"] and '-      "action": "deny",' in changed


def test_pick_and_list() -> None:
    found = [{"version": 2, "document": {}}, {"version": 1, "document": {}}]
    assert pick(found, None, "acme")["version"] == 2 and pick(found, 1, "acme")["version"] == 1
    with pytest.raises(Exception, match="no rule pack version 5; published: 1, 2"):
        pick(found, 5, "acme")
    assert format_list([], "acme") == "no rule pack published for tenant 'acme'"


def _located(offset: int, **changes: object) -> LocatedDeadLetter:
    letter = DeadLetter(
        "t.conversation.events",
        0,
        offset,
        b"k",
        b"\xc3\x01",
        (),
        "unknown-schema: x",
        "unknown-schema",
        0,
        "policy",
    )
    for name, value in changes.items():
        object.__setattr__(letter, name, value)
    return LocatedDeadLetter("t.conversation.events.dlq", 0, offset, letter)


def test_replay_plan_skips_with_reasons_and_force_overrides_only_poison() -> None:
    fresh, poison, done, cut = _located(0), _located(1), _located(2), _located(3, value_truncated=True)
    unreadable = LocatedDeadLetter("t.conversation.events.dlq", 0, 4, None, b"\x00", "bad record")
    letters = [fresh, poison, done, cut, unreadable]
    already = {replay_tag(done): (0, 99)}

    def still(d: DeadLetter) -> str | None:
        return "not-single-object: x" if d.offset == 1 else None

    steps = plan(letters, already, still)
    assert [s.action for s in steps] == [REPLAY, SKIP, SKIP, SKIP, SKIP]
    assert steps[1].why.startswith("still does not decode (not-single-object: x)")
    assert steps[2].why == "already replayed as t.conversation.events[0]@99"
    assert steps[4].why == "the DLQ record itself does not decode (bad record)"
    forced = plan(letters, already, still, force=True)
    assert [s.action for s in forced] == [REPLAY, REPLAY, SKIP, SKIP, SKIP]  # force never replays twice
    assert format_steps(steps, dry_run=True).splitlines()[-1] == "1 of 5 dead letter(s) would be replayed"
    assert steps[0].tag == "t.conversation.events.dlq[0]@0"


def test_replay_filters() -> None:
    a, b = _located(0), _located(1, reason_code="invalid-envelope", key=b"other")
    assert selected([a, b], Filters(reason="invalid-envelope")) == [b]
    assert selected([a, b], Filters(key="k")) == [a]
    assert selected([a, b], Filters(offset=1)) == [b]


def test_plain_progress_lines_are_rate_limited() -> None:
    now = [0.0]
    out = io.StringIO()
    p = PlainProgress("replay", None, out, clock=lambda: now[0])
    p.update(1)
    now[0] = 6.0
    p.update(2, total=10)
    now[0] = 7.0
    p.update(3)
    p.finish()
    assert out.getvalue().splitlines() == ["replay: 2/10 (0/s)", "replay: 3/10 (0/s)"]


def test_bar_draws_with_rich_on_a_terminal_only() -> None:
    out = io.StringIO()
    with bar("produce", 4, stream=out, tty=True) as update:
        update(4)
    assert "produce" in out.getvalue() and "4/4" in out.getvalue()
    quiet = io.StringIO()
    with bar("produce", 4, stream=quiet, tty=False) as update:
        update(4)
    assert quiet.getvalue() == ""  # short work off a terminal: no lines at all
