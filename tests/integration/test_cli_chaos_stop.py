"""``ledgerflow chaos`` stopped by SIGTERM (``timeout``, systemd, a cancelled CI job) stops the private
cluster it started, as Ctrl-C does: no broker and no Redis of the run is left running. With
``LEDGERFLOW_TEST_REDIS=cluster`` (``make test-redis-cluster``) the run has a Redis Cluster
(``--redis-cluster``), and none of its six nodes may be left either.

The run is the real CLI as a subprocess with its own ``--state-dir``; every process it started
is found through the pid files there. Whatever is still alive at the end is SIGKILLed by the test
(the failure says so), so a regression never leaks a cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from ledgerflow.config import Settings, child_env
from ledgerflow.stack import rediscluster
from ledgerflow.stack.processes import (
    _alive,  # the stack's own test: a zombie is not alive
    read_pid_file,
)
from tests.support.redismode import redis_mode

UP_WITHIN_S = 240.0
STOPPED_WITHIN_S = 120.0
INTERRUPTED = 130


def _started(state: Path) -> dict[Path, int]:
    """pid file -> pid, for every pid file under ``state``."""
    found = {}
    for pid_file in state.rglob("*.pid"):
        if (recorded := read_pid_file(pid_file)) is not None:
            found[pid_file] = recorded.pid
    return found


@pytest.mark.timeout(480)
def test_sigterm_stops_the_private_cluster(tmp_path: Path) -> None:
    state = tmp_path / "state"
    log = tmp_path / "chaos.log"
    args = [
        "chaos",
        "--duration",
        "10m",
        "--faults",
        "worker-kill",
        "--workers",
        "1",
        "--state-dir",
        str(state),
    ]
    cluster = redis_mode() == "cluster"
    redis_nodes = rediscluster.NODE_COUNT if cluster else 1
    if cluster:
        args.append("--redis-cluster")
    with open(log, "wb") as out:
        run = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow.cli", *args],
            env=child_env(Settings(state_dir=tmp_path / "cli")) | {"PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    seen: dict[Path, int] = {}
    try:
        deadline = time.monotonic() + UP_WITHIN_S
        while "edge-2: pid" not in log.read_text(errors="replace"):  # everything is up: the load runs
            assert run.poll() is None, f"the run exited {run.returncode}:\n{log.read_text(errors='replace')}"
            assert time.monotonic() < deadline, f"not up in {UP_WITHIN_S:.0f} s:\n{log.read_text()}"
            time.sleep(0.5)
        seen = _started(state)
        found = Counter(f.name for f in seen)
        assert (found["kafka.pid"], found["redis.pid"]) == (3, redis_nodes), (
            f"expected three brokers' and {redis_nodes} Redis pid files, found {sorted(seen)}"
        )
        run.send_signal(signal.SIGTERM)
        code = run.wait(STOPPED_WITHIN_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(30)
        left = {f: pid for f, pid in (seen | _started(state)).items() if _alive(pid)}
        for pid in left.values():
            os.kill(pid, signal.SIGKILL)
    assert not left, f"left running after SIGTERM: {left}\n{log.read_text(errors='replace')[-3000:]}"
    assert code == INTERRUPTED, log.read_text(errors="replace")[-3000:]
