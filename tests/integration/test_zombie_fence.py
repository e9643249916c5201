"""A zombie worker must not write (agents/fence.py, kafka/fenced.py): the hot path's member
that was stopped past the group's session timeout while it held a decided batch wakes up after
the new owner decided the same turns, and writes nothing of it.

The zombie (tests/support/zombie.py) is the real batch loop, Kafka source and policy agent in
a subprocess, its output port wrapped to SIGSTOP the process on its first write of decisions.
While it is stopped a real worker joins, is given every partition once the zombie is expelled
(10 s session timeout), claims the output partitions (fencing the zombie's producers), recovers
the output log and decides every turn. Then the zombie is SIGCONTed mid-write: the broker
refuses its send (``ProducerFenced``), its retry's claim is refused by the group, one decision
per turn is on the log, chains are unbroken (the audit exits 0), and the zombie lives on and
rejoins the group.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ledgerflow.audit.cli import audit_cli
from ledgerflow.config import Settings
from ledgerflow.demo import child_env
from ledgerflow.traffic import publish
from tests.integration.test_batch_crash import _decisions
from tests.integration.test_crash import _assert_one_decision_per_turn, _events, _wait_members
from tests.support.processes import Process, start

ROOT = Path(__file__).resolve().parents[2]


def _zombie(settings: Settings, log_dir: Path) -> Process:
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"zombie-{int(time.time() * 1000)}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "tests.support.zombie"],
            cwd=ROOT,
            env=child_env(settings) | {"PYTHONUNBUFFERED": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Process("zombie", popen, log)


def _stopped(proc: Process) -> bool:
    """The process is in state T (stopped by a signal)."""
    stat = Path(f"/proc/{proc.popen.pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "T"


def _until(what: str, done: Callable[[], bool], procs: list[Process], timeout: float) -> None:
    """Poll ``done`` every 0.2 s for ``timeout`` seconds, failing early if a process died."""
    for _ in range(int(timeout / 0.2)):
        if done():
            return
        dead = [p for p in procs if p.popen.poll() is not None]
        assert not dead, f"{dead[0].name} exited with {dead[0].popen.returncode}:\n{dead[0].log_tail()}"
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {timeout:.0f} s\n" + "\n".join(p.log_tail(15) for p in procs))


@pytest.mark.timeout(420)
def test_a_zombie_woken_after_its_partitions_moved_writes_nothing(
    settings: Settings, log_dir: Path, tmp_path: Path
) -> None:
    """Stopped with its send under way: the broker refuses the send (the new owner's claim bumped
    the writer's epoch), then the group refuses the claim of its retry."""
    events, turns = _events(17, 1500)
    asyncio.run(publish(settings, iter(events), progress_every_s=0))
    zombie = _zombie(settings, log_dir)
    procs = [zombie]
    try:
        _until("the zombie stopping in its first write", lambda: _stopped(zombie), procs, 120)
        assert "zombie: stopping with" in zombie.log.read_text()
        assert _decisions(settings) == 0
        procs.append(start(settings, "worker", "worker", "--agents", "policy", log_dir=log_dir))
        # The worker gets the partitions only once the zombie's session expired: it decides every turn.
        _until("every turn decided by the new owner", lambda: _decisions(settings) >= turns, procs[1:], 180)
        assert _stopped(zombie)
        zombie.popen.send_signal(signal.SIGCONT)
        # Its rejoin waits for the batch in flight (revocation first): two members means it is over.
        _wait_members(settings, 2, procs, timeout=90)
        log = zombie.log.read_text()
        assert "zombie: continued" in log
        _assert_one_decision_per_turn(settings, turns)
        out = tmp_path / "audit.json"
        assert audit_cli(settings, json_out=str(out), skip_projections=True, quiet=True) == 0, (
            out.read_text()[:3000]
        )
        assert "ProducerFenced" in log, log[-3000:]  # the send refused by the broker
        assert "records left to their owner" in log, log[-3000:]  # then its claim by the group
        assert zombie.popen.poll() is None, "the zombie's loop did not survive the refusal"
    finally:
        for p in procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGCONT)
            p.stop()
