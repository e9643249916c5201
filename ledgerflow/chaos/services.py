"""The run's own worker and edge processes: started, signalled, restarted and stopped by pid.

Only processes this run started are ever signalled (their ``Popen``), never anything found by
name. Each child dies with the run (``PR_SET_PDEATHSIG``) even if the run is SIGKILLed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ledgerflow.agents.supervisor import _die_with_parent
from ledgerflow.netutil import wait_http_ready


@dataclass
class Service:
    """``ledgerflow ARGS`` as a child process that a fault may kill and the run restarts."""

    name: str
    args: tuple[str, ...]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None
    epoch: int = 0  # +1 at every start and every kill: a client compares it across its request
    killed: bool = False  # from the moment a kill begins until the next start
    paused: bool = False
    http: str | None = None  # an edge's base URL
    pids: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(
                [sys.executable, "-m", "ledgerflow.cli", *self.args],
                env=self.env | {"PYTHONUNBUFFERED": "1"},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        self.epoch += 1
        self.killed = False
        self.pids.append(self.popen.pid)
        if self.http is not None:
            wait_http_ready(_Started(self.name, self.popen, self.log_tail), self.http, timeout=90)

    @property
    def pid(self) -> int:
        assert self.popen is not None, f"{self.name} was never started"
        return self.popen.pid

    def alive(self) -> bool:
        """Running and not being killed. ``poll()`` alone is not enough: while a fault's thread
        reaps a killed child (``wait``), CPython's ``poll()`` from another thread cannot take the
        waitpid lock and answers None, "still running" — a client seeing its connection drop
        then blamed a live edge."""
        return self.popen is not None and not self.killed and self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)
        self.paused = sig == signal.SIGSTOP

    def kill(self) -> None:
        """SIGKILL, and reap it (a zombie would still look alive)."""
        self.epoch += 1  # first: a client that sees the connection drop must know it was killed
        self.killed = True
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(30)
        self.paused = False

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGCONT (a stopped process ignores SIGTERM until then), SIGTERM, SIGKILL after ``timeout``."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.popen.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.returncode

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


@dataclass(slots=True)
class _Started:
    """A started service as the readiness check sees it."""

    name: str
    popen: subprocess.Popen[bytes]
    tail: Callable[[int], str]

    def log_tail(self, lines: int = 40) -> str:
        return self.tail(lines)


def wait_until(done: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    """Poll ``done()`` until true or ``timeout`` seconds passed; whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if done():
            return True
        time.sleep(step)
    return bool(done())
