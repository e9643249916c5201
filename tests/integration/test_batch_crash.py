"""SIGKILL of the hot path's batch loop (agents/batchloop.py) while it drains a backlog.

The worker runs only the batch loop's agents (policy + projector), on a backlog published
before it starts, so every kill lands while batches of up to 1,000 records are being
decided, produced, projected and committed. Killed twice at different depths, then left to
finish: every turn has exactly one decision, every conversation's turn count in the read
models equals its turns (no projection applied twice or lost), and the audit — chains,
decisions re-derived, read models equal to a rebuild — is clean.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from ledgerflow.config import Settings
from ledgerflow.kafka.logs import count_records
from ledgerflow.projections.keys import Keys
from ledgerflow.redisclient import sync_client
from ledgerflow.topics import POLICY_DECISIONS
from ledgerflow.traffic import publish
from tests.integration.test_crash import (
    _assert_audit_clean,
    _assert_one_decision_per_turn,
    _events,
    _wait_settled,
)
from tests.support.processes import Process, start

HOT_PATH = ("--agents", "policy,projector")


def _decisions(settings: Settings) -> int:
    """Decisions on the log (records: their end offsets count transaction markers too)."""
    return asyncio.run(count_records(settings, settings.topic(POLICY_DECISIONS)))


def _kill_when(settings: Settings, worker: Process, at_least: int, turns: int) -> int:
    """SIGKILL ``worker`` once ``at_least`` decisions are written and it is still deciding."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        decided = _decisions(settings)
        assert worker.popen.poll() is None, f"the worker exited:\n{worker.log_tail()}"
        if decided >= at_least:
            worker.kill()
            assert decided < turns, f"the backlog was drained ({decided}/{turns}) before the kill"
            return decided
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} decisions within 180 s\n{worker.log_tail()}")


@pytest.mark.timeout(600)
def test_worker_sigkilled_mid_batch_decides_and_projects_every_turn_exactly_once(
    settings: Settings, log_dir: Path, tmp_path: Path
) -> None:
    events, turns = _events(13, 48_000)
    asyncio.run(publish(settings, iter(events), progress_every_s=0))
    workers = [start(settings, "worker-1", "worker", *HOT_PATH, log_dir=log_dir)]
    try:
        first = _kill_when(settings, workers[-1], max(turns // 10, 1), turns)
        workers.append(start(settings, "worker-2", "worker", *HOT_PATH, log_dir=log_dir))
        # a second worker drains thousands of turns between two polls: aim early in a large backlog
        second = _kill_when(settings, workers[-1], first + turns // 10, turns)
        workers.append(start(settings, "worker-3", "worker", *HOT_PATH, log_dir=log_dir))
        waited = _wait_settled(settings, turns, workers[-1:], timeout=300)
        _assert_one_decision_per_turn(settings, turns)
        keys = Keys.for_prefix(settings.topic_prefix)
        want = Counter((e.tenant, e.subject) for e in events if e.type == "MessageSubmitted")
        client = sync_client(settings.redis_url)
        try:
            pipe = client.pipeline(transaction=False)
            for tenant, conv in want:
                pipe.hget(keys.conversation(tenant, conv), "turns")
            got = dict(zip(want, (int(v or 0) for v in pipe.execute()), strict=True))
        finally:
            client.close()
        wrong = {c: (got[c], n) for c, n in want.items() if got[c] != n}
        assert not wrong, f"{len(wrong)} conversations with a wrong turn count: {list(wrong.items())[:5]}"
        report = _assert_audit_clean(settings, tmp_path / "audit.json")
    finally:
        for w in workers:
            w.stop()
    assert report["stats"]["decisions re-derived"] == turns
    print(f"\n{turns} turns, killed at {first} and {second} decisions; settled in {waited:.0f} s")
