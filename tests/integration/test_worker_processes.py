"""``ledgerflow worker --processes 2`` on a private stack, over six partitions.

Both supervised children own partitions of the hot path's group (each serves its own consumer-lag
rows on the metrics port base + i); one child is SIGKILLed while the backlog is being decided and
the supervisor restarts it; more turns arrive after. Every turn ends with exactly one decision,
every conversation's turn count in the read models equals its turns, the audit (chains,
decisions re-derived, read models equal to a rebuild) is clean, and SIGTERM to the supervisor
stops both children.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledgerflow.agents.batchloop import GROUP
from ledgerflow.config import Settings
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.metrics import WORKER_METRICS_ENV
from ledgerflow.redisclient import sync_client
from ledgerflow.topics import CONVERSATION_EVENTS
from ledgerflow.traffic import publish
from tests.integration.clikit import run_cli
from tests.integration.test_crash import (
    _assert_audit_clean,
    _assert_one_decision_per_turn,
    _events,
    _wait_settled,
)
from tests.support.privatestack import free_port_pair, private_settings, private_stack
from tests.support.processes import Process, live_keys, start

PARTITIONS = 6
CHILD_LINE = re.compile(r"worker process (\d+) of 2: pid (\d+)")


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    private = private_settings(tmp_path_factory.mktemp("procs-stack"))
    with private_stack(private):
        yield private


@pytest.fixture
def settings(own_stack: Settings) -> Settings:
    """This test's own topics (six partitions each) and key space on the module's private stack."""
    prefixed = own_stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(prefixed, partitions=PARTITIONS))
    return prefixed


def _two_workers(settings: Settings, tmp_path: Path, metrics: str, *args: str) -> Process:
    """``ledgerflow worker --processes 2 ARGS``, metrics from ``metrics`` on."""
    extra = {WORKER_METRICS_ENV: metrics}
    return start(
        settings, "workers", "worker", "--processes", "2", *args, log_dir=tmp_path / "logs", extra_env=extra
    )


def _children(supervisor: Process) -> dict[int, int]:
    """The latest pid of each child (1-based index), from the supervisor's start-up lines."""
    return {int(i): int(pid) for i, pid in CHILD_LINE.findall(supervisor.log.read_text(errors="replace"))}


def _owned(metrics: str, group: str) -> set[int]:
    """The partitions of conversation.events that the worker serving ``metrics`` reports lag for."""
    try:
        text = httpx.get(f"http://{metrics}/metrics", timeout=5).text
    except httpx.HTTPError:
        return set()
    rows = re.findall(r"ledgerflow_consumer_lag_records\{([^}]*)\}", text)
    labels = [dict(re.findall(r'(\w+)="([^"]*)"', row)) for row in rows]
    return {
        int(r["partition"])
        for r in labels
        if r.get("group") == group and r.get("topic", "").endswith(CONVERSATION_EVENTS)
    }


def _wait_both_own(settings: Settings, base_port: int, supervisor: Process) -> list[set[int]]:
    """Until each child owns some partitions and together they own all six (the group settled)."""
    group = settings.topic_prefix + GROUP
    deadline = time.monotonic() + 90
    owned: list[set[int]] = []
    while time.monotonic() < deadline:
        assert supervisor.popen.poll() is None, supervisor.log_tail()
        owned = [_owned(f"127.0.0.1:{base_port + i}", group) for i in range(2)]
        if all(owned) and not owned[0] & owned[1] and owned[0] | owned[1] == set(range(PARTITIONS)):
            return owned
        time.sleep(0.5)
    raise AssertionError(f"the children never shared the partitions: {owned}\n{supervisor.log_tail()}")


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


@pytest.mark.timeout(240)
def test_two_worker_processes_share_partitions_survive_a_child_kill_and_stop_together(
    settings: Settings, tmp_path: Path
) -> None:
    first, turns_1 = _events(17, 1_500)
    later, turns_2 = _events(18, 600)
    asyncio.run(publish(settings, iter(first), progress_every_s=0))
    base_port = free_port_pair()
    supervisor = _two_workers(settings, tmp_path, f"127.0.0.1:{base_port}")
    try:
        owned = _wait_both_own(settings, base_port, supervisor)
        before = _children(supervisor)
        assert set(before) == {1, 2}, supervisor.log_tail()
        os.kill(before[2], signal.SIGKILL)
        asyncio.run(publish(settings, iter(later), progress_every_s=0))
        deadline = time.monotonic() + 60
        while _children(supervisor).get(2) == before[2] and time.monotonic() < deadline:
            time.sleep(0.5)
        after = _children(supervisor)
        assert after[2] != before[2] and after[1] == before[1], supervisor.log_tail()
        assert f"worker process 2 (pid {before[2]}) exited with -9" in supervisor.log.read_text()
        _wait_both_own(settings, base_port, supervisor)  # the restarted child owns partitions again
        turns = turns_1 + turns_2
        _wait_settled(settings, turns, [supervisor], timeout=120)
        _assert_one_decision_per_turn(settings, turns)
        want = Counter((e.tenant, e.subject) for e in first + later if e.type == "MessageSubmitted")
        client = sync_client(settings.redis_url)
        try:
            keys = live_keys(client, settings)
            pipe = client.pipeline(transaction=False)
            for tenant, conv in want:
                pipe.hget(keys.conversation(tenant, conv), "turns")
            got = dict(zip(want, (int(v or 0) for v in pipe.execute())))
        finally:
            client.close()
        wrong = {c: (got[c], n) for c, n in want.items() if got[c] != n}
        assert not wrong, f"{len(wrong)} conversations with a wrong turn count: {list(wrong.items())[:5]}"
        report = _assert_audit_clean(settings, tmp_path / "audit.json")
        assert report["stats"]["decisions re-derived"] == turns
        code = supervisor.stop(signal.SIGTERM, timeout=60)
        assert code == 0, supervisor.log_tail()
        assert not [pid for pid in after.values() if _alive(pid)], "a child outlived its supervisor"
        assert "all 2 processes stopped" in supervisor.log.read_text()
    finally:
        supervisor.stop()
    print(f"\n{turns} turns; partitions owned {owned}; child 2 restarted {before[2]} -> {after[2]}")


def test_children_stop_when_the_supervisor_is_sigkilled(settings: Settings, tmp_path: Path) -> None:
    supervisor = _two_workers(settings, tmp_path, "off", "--agents", "policy,projector")
    try:
        deadline = time.monotonic() + 60
        while supervisor.log.read_text().count("worker: agents") < 2 and time.monotonic() < deadline:
            assert supervisor.popen.poll() is None, supervisor.log_tail()
            time.sleep(0.5)
        children = _children(supervisor)
        assert set(children) == {1, 2} and all(map(_alive, children.values())), supervisor.log_tail()
        supervisor.kill()
        deadline = time.monotonic() + 40
        while any(map(_alive, children.values())) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = [pid for pid in children.values() if _alive(pid)]
    finally:
        for pid in _children(supervisor).values():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not left, f"children {left} outlived their SIGKILLed supervisor"


@pytest.mark.parametrize("n", ["0", "-2"])
def test_fewer_than_one_process_is_one_line_and_exit_2_before_any_connection(n: str, tmp_path: Path) -> None:
    # Nothing listens at this address: the refusal must come before any connection attempt.
    nowhere = Settings(kafka_bootstrap="127.0.0.1:9", redis_url="redis://127.0.0.1:9/0", state_dir=tmp_path)
    ran = run_cli(nowhere, "worker", "--processes", n, timeout=60)
    assert ran.code == 2
    assert ran.one_line() == f"ledgerflow: --processes must be at least 1, not {n}"
