"""``ledgerflow worker --processes N``: N worker processes on this host, one supervisor.

Each child is a plain ``ledgerflow worker`` (same agents, same settings) started with
``LEDGERFLOW_WORKER_CHILD=i``: it joins the same consumer groups as any other worker, so Kafka
shares the partitions among the children exactly as among independent workers. The supervisor
only starts them, gives child i the metrics port base + i and its own faust data directory,
forwards SIGTERM/SIGINT, restarts a child that dies unexpectedly (with backoff) and exits when
told to stop. It decides nothing and holds no Kafka or Redis connection.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

from ledgerflow import retry
from ledgerflow.config import Settings, child_env
from ledgerflow.errors import ValidationError
from ledgerflow.metrics import WORKER_METRICS_ENV, worker_metrics_address

CHILD_ENV = "LEDGERFLOW_WORKER_CHILD"  # set in a supervised child: its index, 0 … N-1
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_AFTER_S = 60.0  # a child up this long has recovered: its next death restarts after BACKOFF_FIRST_S
STOP_GRACE_S = 30.0  # after SIGTERM, what a child gets to leave its groups before SIGKILL
POLL_S = 0.2

log = logging.getLogger(__name__)


MAX_PORT = 65535


def check_processes(processes: int, metrics: str | None = None) -> int:
    """``processes`` if it is a usable count of children whose metrics ports (``metrics``' port + i,
    see ``child_metrics``) all exist; ValidationError (one line, exit 2) if not."""
    if processes < 1:
        raise ValidationError(f"--processes must be at least 1, not {processes}")
    if metrics is not None:
        port = int(metrics.rpartition(":")[2])
        if port + processes - 1 > MAX_PORT:
            raise ValidationError(
                f"--processes {processes}: the children's metrics ports would run from {port} "
                f"past {MAX_PORT}; "
                f"set {WORKER_METRICS_ENV} to a port at most {MAX_PORT - processes + 1}, or off"
            )
    return processes


def child_metrics(base: str | None, index: int) -> str:
    """Child ``index``'s metrics address: the base port + index on the base host; 'off' if none."""
    if base is None:
        return "off"
    host, _, port = base.rpartition(":")
    return f"{host}:{int(port) + index}"


def data_dir_suffix(env: Mapping[str, str]) -> str:
    """What a supervised child appends to its faust data directory's name ('' when unsupervised,
    so a single worker keeps the directory it always had)."""
    index = env.get(CHILD_ENV, "").strip()
    return f"-{index}" if index else ""


def backoff(restarts: int) -> float:
    """Seconds before the ``restarts``-th consecutive restart (1-based): 1, 2, 4, … capped at 30."""
    return retry.delay(restarts, BACKOFF_FIRST_S, BACKOFF_MAX_S)


@dataclass
class Child:
    index: int
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    restarts: int = 0  # consecutive unexpected deaths, reset once the child stayed up STABLE_AFTER_S
    due: float = field(default=0.0)  # when a dead child is started again


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the supervisor dies (even by SIGKILL), so no
    orphaned worker keeps consuming (Linux prctl PR_SET_PDEATHSIG; elsewhere a no-op)."""
    name = ctypes.util.find_library("c")
    if sys.platform.startswith("linux") and name:
        ctypes.CDLL(name, use_errno=True).prctl(1, signal.SIGTERM)


class Supervisor:
    def __init__(self, settings: Settings, processes: int, args: Sequence[str], say: Callable[[str], None]):
        self.settings = settings
        self.args = list(args)
        self.say = say
        self.metrics = worker_metrics_address(os.environ)
        self.children = [Child(i) for i in range(check_processes(processes, self.metrics))]
        self.stopping: int | None = None  # the signal that asked us to stop

    def spawn(self, child: Child) -> None:
        env = child_env(self.settings) | {
            CHILD_ENV: str(child.index),
            WORKER_METRICS_ENV: child_metrics(self.metrics, child.index),
        }
        # Its own session: a terminal's Ctrl-C reaches only the supervisor, which forwards it once.
        child.popen = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow.cli", "worker", *self.args],
            env=env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        child.started = time.monotonic()
        self.say(
            f"worker process {child.index + 1} of {len(self.children)}: pid {child.popen.pid}, "
            f"metrics {'at http://' + env[WORKER_METRICS_ENV] + '/metrics' if self.metrics else 'off'}"
        )

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.stopping = signum
        for child in self.children:
            if child.popen is not None and child.popen.poll() is None:
                child.popen.send_signal(signum)

    def check(self, child: Child, now: float) -> None:
        """Restart ``child`` if it died (after its backoff)."""
        if self.stopping is not None:  # a child that stops now was told to
            return
        if child.popen is None:
            if now >= child.due:
                self.spawn(child)
            return
        code = child.popen.poll()
        if code is None:
            return
        up = now - child.started
        child.restarts = 1 if up >= STABLE_AFTER_S else child.restarts + 1
        delay = backoff(child.restarts)
        log.warning(
            "worker process %d (pid %d) exited with %d after %.0f s; restarting it in %.0f s (restart %d)",
            child.index + 1,
            child.popen.pid,
            code,
            up,
            delay,
            child.restarts,
        )
        child.popen, child.due = None, now + delay

    def run(self) -> int:
        previous = {s: signal.signal(s, self.on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for child in self.children:
                self.spawn(child)
            while self.stopping is None:
                now = time.monotonic()
                for child in self.children:
                    self.check(child, now)
                time.sleep(POLL_S)
            return self.wait_stopped()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def wait_stopped(self) -> int:
        """Wait for every child to stop (SIGKILL after STOP_GRACE_S); 0 if all stopped cleanly."""
        deadline = time.monotonic() + STOP_GRACE_S
        worst = 0
        for child in self.children:
            if child.popen is None:
                continue
            try:
                code = child.popen.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("worker process %d did not stop in %.0f s; killed", child.index + 1, STOP_GRACE_S)
                child.popen.kill()
                code = child.popen.wait()
            worst = worst or (0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else 1)
        self.say(f"worker: all {len(self.children)} processes stopped")
        return worst


def supervise(settings: Settings, processes: int, args: Sequence[str], say: Callable[[str], None]) -> int:
    """Run ``ledgerflow worker ARGS`` in ``processes`` supervised children until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    return Supervisor(settings, processes, args, say).run()
