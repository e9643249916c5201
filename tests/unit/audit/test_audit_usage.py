"""Every usage window closed by event time has its record (pure; hand-built turns)."""

from __future__ import annotations

import uuid

from ledgerflow.audit.usage import UsageCheck
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.projections.ops import Position
from ledgerflow.usage.windows import LateUsage, WindowClosed, WindowConfig
from ledgerflow.usage.wire import record_of

CONFIG = WindowConfig(size_micros=1_000_000, lateness_micros=0)
T0 = 1_780_000_000_000_000


def _turn(at: int, tokens: int = 5, event_id: str | None = None) -> Event:
    return new_event(
        "MessageSubmitted",
        tenant="acme",
        subject="conv-1",
        producer="gw",
        payload=MessageSubmitted("t", "user", "hi", "slm-1", tokens),
        occurred_at_micros=at,
        event_id=event_id or str(uuid.uuid4()),
    )


def _written(start: int, partition: int = 0) -> Event:
    closed = WindowClosed("acme", "slm-1", start, start + 1_000_000, 5, 1, 0)
    return record_of(closed, partition, start + 1_000_000)


def _fold(check: UsageCheck, turns: list[Event]) -> None:
    for offset, turn in enumerate(turns):
        check.add_input(Position("conversation.events", 0, offset), turn)


def test_a_window_closed_by_event_time_without_its_record_is_missing_at_its_last_turn() -> None:
    check = UsageCheck(CONFIG)
    check.add_written(_written(T0))
    _fold(check, [_turn(T0), _turn(T0 + 1_000_000), _turn(T0 + 1_500_000), _turn(T0 + 2_000_000)])
    found = check.finish(0)
    assert [(f.kind, f.offset) for f in found] == [("usage.missing", 2)]  # window T0+1s; T0 has its record
    assert check.comparable and check.windows_checked == 2


def test_a_record_of_another_source_partition_does_not_count() -> None:
    check = UsageCheck(CONFIG)
    check.add_written(_written(T0, partition=3))
    _fold(check, [_turn(T0), _turn(T0 + 1_000_000)])
    assert [f.kind for f in check.finish(0)] == ["usage.missing"]


def test_a_duplicate_delivery_and_an_open_window_are_not_findings() -> None:
    check = UsageCheck(CONFIG)
    first = _turn(T0)
    _fold(check, [first, first])  # the same event twice; its window is still open
    assert check.finish(0) == [] and check.windows_checked == 0


def test_records_of_another_window_size_make_the_check_not_comparable() -> None:
    check = UsageCheck(WindowConfig(size_micros=60_000_000))
    check.add_written(_written(T0))
    assert not check.comparable


WINDOWS_AT = Position("usage.windows", 0, 7)


def _charged(start: int, tokens: int, events: int, revision: int = 0, partition: int = 0) -> Event:
    closed = WindowClosed(
        "acme", "slm-1", start, start + 1_000_000, tokens, events, 0, revision, revision > 0
    )
    return record_of(closed, partition, start + 1_000_000)


def _timed(check: UsageCheck, turns: list[Event], timestamp_ms: int) -> None:
    for offset, turn in enumerate(turns):
        check.add_input(Position("conversation.events", 0, offset), turn, timestamp_ms)


def test_a_window_charged_more_than_its_turns_is_overcharged_at_its_record() -> None:
    """A window whose count and tokens were doubled passed: only its presence was checked."""
    check = UsageCheck(CONFIG, overdue_before_ms=1_000)
    check.add_written(_charged(T0, 5, 1), Position("usage.windows", 0, 3))
    check.add_written(_charged(T0, 10, 2, revision=1), WINDOWS_AT)  # the latest revision: doubled
    _timed(check, [_turn(T0), _turn(T0 + 1_000_000)], timestamp_ms=5_000)  # newer than the grace: still
    [finding] = check.finish(0)
    assert (finding.kind, finding.topic, finding.partition, finding.offset, finding.key) == (
        "usage.overcharged",
        "usage.windows",
        0,
        7,
        "acme",
    )
    assert f"'slm-1' [{T0}, {T0 + 1_000_000}) µs of source partition 0" in finding.detail
    assert "charged 10 tokens for 2 turn(s) (0 estimated) in usage.windows (revision 1)" in finding.detail
    assert "its turns on conversation.events give 5 tokens for 1 turn(s) (0 estimated)" in finding.detail
    assert check.windows_totalled == 1


def test_a_window_charged_more_turns_for_fewer_tokens_is_overcharged_at_once() -> None:
    """More of any total is never the agent lagging: it is a finding even within the grace (the
    totals compared as one tuple, tokens first, made 4 tokens for 9 turns "less" than 5 for 1)."""
    check = UsageCheck(CONFIG, overdue_before_ms=1_000)
    check.add_written(_charged(T0, 4, 9), WINDOWS_AT)
    _timed(check, [_turn(T0), _turn(T0 + 1_000_000)], timestamp_ms=5_000)  # newer than the grace
    [finding] = check.finish(0)
    assert finding.kind == "usage.overcharged", finding
    assert check.windows_pending == 0


def test_a_window_charged_less_is_undercharged_once_its_turns_are_past_the_grace() -> None:
    turns = [_turn(T0), _turn(T0 + 100), _turn(T0 + 1_000_000)]
    overdue = UsageCheck(CONFIG, overdue_before_ms=10_000)
    overdue.add_written(_charged(T0, 5, 1), WINDOWS_AT)
    _timed(overdue, turns, timestamp_ms=5_000)
    [finding] = overdue.finish(0)
    assert (finding.kind, finding.offset) == ("usage.undercharged", 7)
    assert (
        "charged 5 tokens for 1 turn(s)" in finding.detail
        and "give 10 tokens for 2 turn(s)" in finding.detail
    )
    recent = UsageCheck(CONFIG, overdue_before_ms=1_000)  # the agent may not have reached the turn yet
    recent.add_written(_charged(T0, 5, 1), WINDOWS_AT)
    _timed(recent, turns, timestamp_ms=5_000)
    assert recent.finish(0) == [] and recent.windows_pending == 1


def test_a_window_s_latest_revision_plus_its_late_deltas_each_once_is_what_it_charged() -> None:
    check = UsageCheck(CONFIG, overdue_before_ms=10_000)
    check.add_written(_charged(T0, 5, 1), WINDOWS_AT)
    check.add_written(_charged(T0, 10, 2, revision=1), WINDOWS_AT)
    late = _turn(T0 + 200)
    delta = record_of(LateUsage("acme", "slm-1", T0, T0 + 1_000_000, 5, 1, 0), 0, T0 + 200, late.event_id)
    check.add_written(delta, WINDOWS_AT)
    check.add_written(delta, WINDOWS_AT)  # written twice (a producer retry): counted once
    _timed(check, [_turn(T0), _turn(T0 + 100), _turn(T0 + 1_000_000), late], timestamp_ms=5_000)
    assert check.finish(0) == [] and check.windows_totalled == 1 and check.windows_pending == 0


def test_a_window_written_without_any_turn_is_overcharged() -> None:
    check = UsageCheck(CONFIG)
    check.add_written(_charged(T0, 5, 1), WINDOWS_AT)
    assert [f.kind for f in check.finish(0)] == ["usage.overcharged"]
    assert check.finish(1) == []  # written for partition 0: checked once, there
