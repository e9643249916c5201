"""``stop_all`` signals only the processes its pid files were written for, for the whole stop."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from ledgerflow.stack import processes
from ledgerflow.stack.processes import Managed, ProcStat, read_stat, spawn, stop_all

MARKER = "ledgerflow-test-stop-all"
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
    "time.sleep(60)"
)


def test_a_pid_that_stops_being_ours_during_the_stop_is_never_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Our process exits after the SIGTERM and its pid is given to another process (a pid recycled
    while another node of the stack still stops): the SIGKILL at the timeout must not reach it.
    The pid file's start time tells the two apart (``is_ours``); the stop checked the pid alone.
    Here the process at the pid is made to look like a stranger once the SIGTERM is sent."""
    proc = Managed("stubborn", tmp_path / "stubborn.pid", (MARKER,))
    log = tmp_path / "stubborn.log"
    pid = spawn(proc, [sys.executable, "-c", STUBBORN, MARKER], log)
    try:
        deadline = time.monotonic() + 10
        while "ready" not in (log.read_text() if log.exists() else ""):  # SIGTERM ignored from now on
            assert time.monotonic() < deadline, "the stubborn process did not start"
            time.sleep(0.02)
        termed: list[int] = []
        real_kill, real_stat = os.kill, read_stat

        def kill(target: int, signum: int) -> None:
            if signum == signal.SIGTERM:
                termed.append(target)
            real_kill(target, signum)

        def stat(target: int) -> ProcStat | None:
            found = real_stat(target)
            if found is None or target not in termed:
                return found
            return ProcStat(found.state, found.start + 1)  # another process, started later, at that pid

        monkeypatch.setattr(os, "kill", kill)
        monkeypatch.setattr(processes, "read_stat", stat)
        stop_all([proc], timeout=0.3)
        monkeypatch.undo()
        after = read_stat(pid)
        assert after is not None and after.state != "Z", "a process that was not ours any more was killed"
        assert not proc.pid_file.exists()
    finally:
        os.kill(pid, signal.SIGKILL)  # not reaped yet: still ours to kill
        os.waitpid(pid, 0)
