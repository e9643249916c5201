"""A stopping worker exits within its deadline (ledgerflow/agents/stopdeadline.py)."""

from __future__ import annotations

import threading

import pytest

from ledgerflow.agents import stopdeadline


def test_the_deadline_ends_the_process_once_it_passes() -> None:
    exited: list[int] = []
    done = threading.Event()

    def exit_now(code: int) -> None:
        exited.append(code)
        done.set()

    timer = stopdeadline.arm(0.05, exit_now)
    assert timer.daemon, "a pending deadline must not keep a finished process alive"
    assert done.wait(5), "the deadline never fired"
    assert exited == [stopdeadline.EXIT_CODE]


def test_a_stop_that_finishes_first_is_not_cut_short() -> None:
    exited: list[int] = []
    timer = stopdeadline.arm(0.2, exited.append)
    timer.cancel()  # stands for the process ending first: a daemon timer dies with it
    timer.join(1)
    assert exited == []


def test_the_worker_arms_the_deadline_on_its_first_stop_signal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    armed: list[float] = []

    def fake_arm(deadline_s: float) -> threading.Timer:
        armed.append(deadline_s)
        return threading.Timer(1, lambda: None)

    class Probe(stopdeadline.Worker):
        def __init__(self) -> None:  # no faust app: only the signal path is under test
            self._signal_stop_time = 1.0  # faust's own guard: a stop is already scheduled

    monkeypatch.setattr(stopdeadline, "arm", fake_arm)
    probe = Probe()
    probe._schedule_shutdown(15)
    probe._schedule_shutdown(15)
    assert armed == [stopdeadline.STOP_DEADLINE_S]
