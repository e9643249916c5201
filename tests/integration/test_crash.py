"""Crash tests on the real stack: SIGKILLed workers lose and double nothing.

A SIGKILLed faust worker stays a member of its consumer group until the session timeout
(10 s here), so every kill stalls the group that long: the budgets below allow for it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from ledgerflow.audit.cli import audit_cli
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.kafka.logs import read_all
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS
from ledgerflow.traffic import interleaved, publish
from ledgerflow.usage.settings import window_config_from
from tests.support.processes import Process, pipeline_settled, start

TENANTS = ["acme", "globex", "initech", "umbrella"]
GROUP = "ledgerflow-worker"  # the faust app id (ledgerflow.agents.app.create_app), after the topic prefix


class Feed:
    """Publishes ``events`` at ``rate`` per second on a background thread."""

    def __init__(self, settings: Settings, events: list, rate: float) -> None:
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(settings, events, rate), daemon=True)
        self._thread.start()

    def _run(self, settings: Settings, events: list, rate: float) -> None:
        try:
            asyncio.run(publish(settings, iter(events), rate=rate, progress_every_s=0))
        except BaseException as exc:
            self.error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self) -> None:
        self._thread.join(120)
        assert not self._thread.is_alive(), "publishing did not finish"
        assert self.error is None, f"publishing failed: {self.error!r}"


def _events(seed: int, count: int) -> tuple[list, int]:
    """About ``count`` events of interleaved conversations, and their number of turns.

    Their event times start at the beginning of the current usage window (60 s by default)
    and span about 15 s, so none of them closes a window by event time (that takes 10 s of
    lateness past the window's end): the audit then expects no ``usage.windows`` record, and
    the tests that run without the usage agent are not at the mercy of the wall clock."""
    rng = random.Random(seed)
    size = window_config_from(os.environ).size_micros
    start = time.time_ns() // 1000 // size * size
    events: list = []
    while len(events) < count:
        events += interleaved(rng, TENANTS, 500, start, open_at_once=16)
    return events, sum(1 for e in events if e.type == "MessageSubmitted")


def _wait_settled(settings: Settings, turns: int, workers: list[Process], timeout: float) -> float:
    """Until every turn has a decision and the read models applied every record; seconds waited."""
    began = time.monotonic()
    state = ""
    while time.monotonic() - began < timeout:
        settled, state = asyncio.run(pipeline_settled(settings, turns))
        if settled:
            return time.monotonic() - began
        for w in workers:
            assert w.popen.poll() is None, f"a worker exited with {w.popen.returncode}:\n{w.log_tail()}"
        time.sleep(1.0)
    raise AssertionError(
        f"not settled within {timeout:.0f} s: {state}\n" + "\n".join(w.log_tail(15) for w in workers)
    )


def _assert_one_decision_per_turn(settings: Settings, turns: int) -> None:
    inputs = asyncio.run(read_all(settings, settings.topic(CONVERSATION_EVENTS)))
    turn_ids = {
        e.event_id for e in map(codec.decode, (r.value for r in inputs)) if e.type == "MessageSubmitted"
    }
    decided = [
        codec.decode(r.value).payload.input_event_id
        for r in asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS)))
    ]
    assert len(turn_ids) == turns
    assert len(decided) == turns and set(decided) == turn_ids, (
        f"{len(decided)} decisions for {turns} turns: {len(decided) - len(set(decided))} doubled, "
        f"{len(turn_ids - set(decided))} lost"
    )


CATCH_UP_S = 90.0
"""How long the audit is repeated while its only notes are of agents not caught up yet: longer than
the audit's grace period (60 s), after which a turn still uncounted is a finding, not a note."""


def _pending_only(notes: list[str]) -> bool:
    """Whether every note is of an agent that has not caught up yet (``audit again once …``)."""
    return bool(notes) and all("audit again once" in note for note in notes)


def _assert_audit_clean(settings: Settings, out: Path) -> dict:
    """The audit finds nothing and notes nothing. The usage agent folds after the policy agent and,
    after a kill, re-folds the partitions it took over: while its notes say it has not caught up
    (a window closed by the clock before its last turns came, their correction not written yet),
    the audit is run again, up to ``CATCH_UP_S``."""
    deadline, runs = time.monotonic() + CATCH_UP_S, 0
    while True:
        code = audit_cli(settings, json_out=str(out), skip_projections=False, quiet=True)
        report = json.loads(out.read_text())
        runs += 1
        if code != 0 or not _pending_only(report["notes"]) or time.monotonic() > deadline:
            break
        time.sleep(2.0)
    print(f"\naudit run {runs} time(s) until no agent was behind")
    assert code == 0, json.dumps(report["findings"][:5], indent=2)
    assert report["notes"] == [], report["notes"]  # nothing pending, every read-model entity compared
    assert report["stats"]["read-model entities compared"] > 0
    return report


async def _group_members(settings: Settings) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([settings.topic_prefix + GROUP])
        group = response.groups[0]
        return len(group[5]) if group[2] == "Stable" else -1  # (error, id, state, type, protocol, members, …)
    finally:
        await admin.close()


def _wait_members(settings: Settings, count: int, workers: list[Process], timeout: float = 60.0) -> None:
    """Until the worker group is Stable with ``count`` members (a killed one is expelled after 10 s)."""
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = asyncio.run(_group_members(settings))
        if seen == count:
            return
        time.sleep(0.5)
    logs = "\n".join(f"--- {w.name} ({w.log}):\n{w.log_tail(12)}" for w in workers)
    raise AssertionError(
        f"the worker group never became stable with {count} member(s) within {timeout:.0f} s "
        f"(members seen: {seen}; -1 = still rebalancing)\n{logs}"
    )


@pytest.mark.timeout(900)
def test_worker_sigkilled_repeatedly_under_20000_events_loses_and_doubles_nothing(
    settings: Settings, log_dir: Path, tmp_path: Path
) -> None:
    rng = random.Random(20_000)
    events, turns = _events(7, 20_000)
    assert len(events) >= 20_000
    began = time.monotonic()
    workers = [start(settings, "worker", "worker", log_dir=log_dir)]
    try:
        feed = Feed(settings, events, rate=700.0)
        for _ in range(4):  # Kill at random points: while publishing, and while catching up.
            time.sleep(rng.uniform(3.0, 9.0))
            workers[-1].kill()
            workers.append(start(settings, "worker", "worker", log_dir=log_dir))
        feed.join()
        waited = _wait_settled(settings, turns, workers[-1:], timeout=300)
        _assert_one_decision_per_turn(settings, turns)
        report = _assert_audit_clean(settings, tmp_path / "audit.json")
    finally:
        for w in workers:
            w.stop()
    assert report["stats"]["decisions re-derived"] == turns
    print(
        f"\n{len(events)} events, {turns} turns, 4 SIGKILLs: settled {waited:.0f} s after publishing, "
        f"{time.monotonic() - began:.0f} s in all; audit {report['seconds']:.1f} s"
    )


@pytest.mark.timeout(900)
def test_sigkill_of_one_of_two_workers_hands_its_partitions_to_the_other(
    settings: Settings, log_dir: Path, tmp_path: Path
) -> None:
    events, turns = _events(8, 8_000)
    began = time.monotonic()
    survivor = start(settings, "worker-a", "worker", log_dir=log_dir)
    victim = start(settings, "worker-b", "worker", log_dir=log_dir)
    try:
        _wait_members(
            settings, 2, [survivor, victim]
        )  # both own partitions of conversation.events and policy.decisions
        feed = Feed(settings, events, rate=500.0)
        time.sleep(6.0)
        assert feed.running, "the kill must land mid-stream"
        victim.kill()
        feed.join()
        _wait_members(settings, 1, [survivor])
        waited = _wait_settled(settings, turns, [survivor], timeout=240)
        _assert_one_decision_per_turn(settings, turns)
        report = _assert_audit_clean(settings, tmp_path / "audit.json")
    finally:
        victim.stop()
        survivor.stop()
    print(
        f"\n{len(events)} events, {turns} turns, one of two workers SIGKILLed: settled {waited:.0f} s after "
        f"publishing, {time.monotonic() - began:.0f} s in all; audit {report['seconds']:.1f} s"
    )
