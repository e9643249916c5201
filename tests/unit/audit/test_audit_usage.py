"""Every usage window closed by event time has its record (pure; hand-built turns)."""

from __future__ import annotations

import uuid

from ledgerflow.audit.usage import UsageCheck
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.projections.ops import Position
from ledgerflow.usage.windows import WindowClosed, WindowConfig
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
