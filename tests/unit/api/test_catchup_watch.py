"""The catch-up's pure decision: heartbeat when the stream is quiet, give up when the log reads
stop moving (a paused broker), never while the stream only waits for a catch-up slot."""

from __future__ import annotations

import pytest

from ledgerflow.api import catchup_watch as watch
from ledgerflow.api.catchup_watch import GiveUp, Heartbeat, Wait
from ledgerflow.api.faults import DEADLINE_S
from ledgerflow.api.hub import CATCH_UP_STALL_S

HEARTBEAT_S = 2.0
STALL_S = 10.0


def _step(clock: watch.CatchUpClock, now: float) -> watch.Step:
    return watch.next_step(clock, now, HEARTBEAT_S, STALL_S)


def test_the_edge_bound_is_a_few_dependency_deadlines() -> None:
    assert CATCH_UP_STALL_S == 3 * DEADLINE_S


def test_a_fresh_catch_up_waits_until_its_first_heartbeat_is_due() -> None:
    clock = watch.started(100.0)
    assert _step(clock, 100.5) == Wait(1.5)


def test_a_quiet_stream_gets_a_heartbeat_and_then_waits_a_whole_interval_again() -> None:
    clock = watch.started(100.0)
    assert _step(clock, 102.0) == Heartbeat()
    clock = watch.after_heartbeat(clock, 102.0, 102.0)
    assert _step(clock, 102.0) == Wait(2.0)


def test_waiting_for_a_slot_never_gives_up_it_only_sends_heartbeats() -> None:
    clock = watch.started(0.0)
    for beat in range(1, 100):
        now = beat * HEARTBEAT_S
        assert _step(clock, now) == Heartbeat()
        clock = watch.after_heartbeat(clock, now, now)
    assert clock.progressed_at is None


def test_the_stall_bound_runs_from_the_slot_not_from_the_stream_start() -> None:
    clock = watch.admitted(watch.started(0.0), 50.0)
    clock = watch.after_heartbeat(clock, 59.0, 59.0)
    assert _step(clock, 59.9) == Wait(pytest.approx(0.1))  # the stall comes before the next heartbeat
    assert isinstance(_step(clock, 60.0), GiveUp)


def test_admission_is_counted_once() -> None:
    clock = watch.admitted(watch.started(0.0), 5.0)
    assert watch.admitted(clock, 9.0).progressed_at == 5.0


def test_empty_reads_of_a_silent_broker_are_no_progress() -> None:
    clock = watch.admitted(watch.started(0.0), 0.0)
    for second in range(1, 10):  # one empty read per second, as the hub's 1 s fetch timeout gives
        clock = watch.after_batch(clock, float(second), before=41, scanned_to=41, wrote=False)
        assert not isinstance(_step(clock, float(second)), GiveUp)
    step = _step(clock, 10.0)
    assert isinstance(step, GiveUp)
    assert "10 s" in step.reason and "last event id" in step.reason and "\n" not in step.reason


def test_scanning_further_is_progress_even_without_a_frame_for_this_stream() -> None:
    clock = watch.admitted(watch.started(0.0), 0.0)
    clock = watch.after_batch(clock, 9.0, before=41, scanned_to=541, wrote=False)  # others' records
    assert clock.progressed_at == 9.0
    assert not isinstance(_step(clock, 18.9), GiveUp)
    assert _step(clock, 18.0) == Heartbeat()  # nothing was written: the client still hears from us
    assert isinstance(_step(clock, 19.0), GiveUp)


def test_frames_written_postpone_the_heartbeat() -> None:
    clock = watch.admitted(watch.started(0.0), 0.0)
    clock = watch.after_batch(clock, 1.5, before=-1, scanned_to=499, wrote=True)
    assert clock.wrote_at == 1.5
    assert _step(clock, 3.0) == Wait(pytest.approx(0.5))


def test_the_first_batch_admits_a_catch_up_that_was_not_marked_admitted() -> None:
    clock = watch.after_batch(watch.started(0.0), 3.0, before=4, scanned_to=4, wrote=False)
    assert clock.progressed_at == 3.0
    assert isinstance(_step(clock, 13.0), GiveUp)


def test_giving_up_wins_over_a_due_heartbeat() -> None:
    clock = watch.admitted(watch.started(0.0), 0.0)
    assert isinstance(_step(clock, 30.0), GiveUp)


def test_a_clock_that_went_backwards_for_the_caller_waits_rather_than_acting() -> None:
    clock = watch.admitted(watch.started(10.0), 10.0)
    step = _step(clock, 9.0)
    assert isinstance(step, Wait) and step.seconds == pytest.approx(3.0)


def test_a_heartbeat_write_the_client_blocks_is_not_counted_against_kafka() -> None:
    clock = watch.admitted(watch.started(0.0), 0.0)
    assert _step(clock, 8.0) == Heartbeat()
    clock = watch.after_heartbeat(clock, 8.0, 30.0)  # the client took it 22 s later
    assert clock.progressed_at == 22.0 and clock.wrote_at == 30.0
    assert _step(clock, 30.0) == Wait(pytest.approx(2.0))  # 8 s waited on Kafka, not 30
    assert isinstance(_step(clock, 32.0), GiveUp)  # and 2 s more make the bound


def test_a_read_that_came_back_is_taken_before_the_stall_is_judged() -> None:
    clock = watch.admitted(watch.started(0.0), 0.0)
    assert isinstance(_step(clock, 30.0), GiveUp)
    assert watch.next_step(clock, 30.0, HEARTBEAT_S, STALL_S, answered=True) == Wait(0.0)


def test_a_heartbeat_written_while_waiting_for_a_slot_starts_no_bound() -> None:
    clock = watch.after_heartbeat(watch.started(0.0), 2.0, 40.0)
    assert clock.progressed_at is None and clock.wrote_at == 40.0
