"""Fault suite: Redis flushed, killed and restarted empty, or down for seconds, while turns flow.

Every test runs its OWN Redis (a private ``redis-server`` on a free port, no persistence, its
own state directory) that it kills and flushes at will; Kafka is the shared test broker
(each test has its own topic prefix). After each fault round the test waits until every turn
has its decision and the read models applied every record, then checks them two ways:
- against the ground truth of what was published (turns per conversation);
- against a rebuild from the log (the audit's projection check: replay into a scratch space
  and diff entity by entity).

``LEDGERFLOW_FAULT_ROUNDS`` (default 4) and ``LEDGERFLOW_FAULT_SEED`` make longer or
different runs from the command line.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis

from ledgerflow.audit.cli import bars
from ledgerflow.audit.projections import audit_projections
from ledgerflow.audit.report import Report
from ledgerflow.config import Settings
from ledgerflow.contracts.events import Event
from ledgerflow.kafka.reader import LogReader
from ledgerflow.projections.conversations import SOURCES
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import port_in_use, read_pid_file
from ledgerflow.stack.processes import stop as stop_process
from ledgerflow.traffic import interleaved, publish
from tests.support.processes import Process, free_port, live_keys, pipeline_settled, start

ROUNDS = int(os.environ.get("LEDGERFLOW_FAULT_ROUNDS", "4"))
SEED = int(os.environ.get("LEDGERFLOW_FAULT_SEED", "20261130"))
SETTLE_S = 180.0


@dataclass
class PrivateRedis:
    """A redis-server of this test alone: kill, restart (empty) and flush are safe here."""

    node: redis_stack.RedisNode

    @property
    def url(self) -> str:
        return f"redis://{self.node.host}:{self.node.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=10)

    def kill(self) -> None:
        pid = _pid(self.node)
        assert pid is not None, "the private Redis is not running"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _running(pid) or port_in_use(self.node.host, self.node.port):
            assert time.monotonic() < deadline, "the private Redis did not go away"
            time.sleep(0.02)

    def start(self) -> None:
        redis_stack.start(self.node)

    def flush(self) -> None:
        with self.client() as client:
            client.flushall()


def _pid(node: redis_stack.RedisNode) -> int | None:
    """The private Redis's pid: the pid file's, if that process runs and our port answers (the
    stack's own check can miss a redis-server that is rewriting its process title)."""
    found = read_pid_file(node.process.pid_file)
    return found.pid if found and _running(found.pid) and port_in_use(node.host, node.port) else None


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    node = redis_stack.RedisNode(tmp_path / "state", "127.0.0.1", free_port())
    redis_stack.start(node)
    yield PrivateRedis(node)
    pid = _pid(node)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)  # no persistence: nothing to lose by not stopping it gently
    stop_process(node.process)


@pytest.fixture
def faulty(settings: Settings, private_redis: PrivateRedis) -> Settings:
    return settings.with_overrides(redis_url=private_redis.url)


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def fault_worker(faulty: Settings, log_dir: Path, metrics_port: int) -> Iterator[Process]:
    proc = start(
        faulty,
        "worker",
        "worker",
        log_dir=log_dir,
        extra_env={"LEDGERFLOW_WORKER_METRICS": f"127.0.0.1:{metrics_port}"},
    )
    yield proc
    proc.stop()


def _publish(settings: Settings, events: list[Event], rate: float = 0.0) -> None:
    asyncio.run(publish(settings, iter(events), rate=rate, progress_every_s=0))


def _turns(events: list[Event]) -> Counter[tuple[str, str]]:
    return Counter((e.tenant, e.subject) for e in events if e.type == "MessageSubmitted")


def _wait_settled(settings: Settings, turns: int, worker: Process) -> None:
    deadline = time.monotonic() + SETTLE_S
    why = ""
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"the worker exited:\n{worker.log_tail()}"
        try:
            done, why = asyncio.run(pipeline_settled(settings, turns))
        except redis.RedisError as exc:  # Redis restarting
            done, why = False, repr(exc)
        if done:
            return
        time.sleep(0.5)
    raise AssertionError(f"the pipeline did not settle in {SETTLE_S:.0f} s: {why}\n{worker.log_tail()}")


def _assert_read_models_right(settings: Settings, published: list[Event], worker: Process) -> None:
    """Live read models hold every published turn once and equal a rebuild from the log.

    The audit's diff is exact only if nothing is projected while it reads both spaces, and
    usage windows close on the clock, not on our traffic: so audit again if any source log
    moved between the moment the pipeline settled and the end of the audit.
    """
    expected = _turns(published)
    for _ in range(5):
        before = asyncio.run(_horizon(settings))
        _wait_settled(settings, sum(expected.values()), worker)
        with redis.Redis.from_url(settings.redis_url, socket_timeout=10) as client:
            keys = live_keys(client, settings)
            live = {conv: int(client.hget(keys.conversation(*conv), "turns") or 0) for conv in expected}
            tenants = {t: int(client.hget(keys.tenant(t), "turns") or 0) for t, _ in expected}
        report = Report()
        asyncio.run(audit_projections(settings, report, bars(False)))
        if asyncio.run(_horizon(settings)) != before:
            continue
        short = {c: (live[c], n) for c, n in expected.items() if live[c] != n}
        assert not short, f"turn counts (live, published) differ: {list(short.items())[:5]}"
        per_tenant = Counter[str]()
        for (tenant, _), n in expected.items():
            per_tenant[tenant] += n
        assert tenants == dict(per_tenant)
        assert report.clean, [str(f) for f in report.findings[:5]]
        return
    raise AssertionError("the logs kept moving during every audit")


async def _horizon(settings: Settings) -> dict[str, list[int]]:
    async with LogReader(settings) as reader:
        return dict(await reader.horizon([settings.topic(t) for t in SOURCES]))


def _fault(rng: random.Random, private: PrivateRedis) -> str:
    """One fault at this instant: a flush, or a kill and a restart (empty) after a short outage."""
    if rng.random() < 0.5:
        private.flush()
        return "flush"
    private.kill()
    down = rng.uniform(0.0, 1.5)
    time.sleep(down)
    private.start()
    return f"kill+restart after {down:.1f} s"


def test_read_models_equal_a_rebuild_after_redis_is_lost_at_random_points(
    faulty: Settings, private_redis: PrivateRedis, fault_worker: Process
) -> None:
    rng = random.Random(SEED)
    published: list[Event] = []
    warm = list(interleaved(rng, ["acme", "globex"], 10, time.time_ns() // 1000, run_id="w"))
    _publish(faulty, warm)
    published += warm
    _wait_settled(faulty, sum(_turns(published).values()), fault_worker)
    for round_no in range(ROUNDS):
        # Conversations of this round start before the faults and go on after them.
        events = list(
            interleaved(rng, ["acme", "globex", "initech"], 36, time.time_ns() // 1000, run_id=f"r{round_no}")
        )
        loader = threading.Thread(target=_publish, args=(faulty, events, 120.0))  # ~2 s of turns
        loader.start()
        faults = []
        for _ in range(rng.randint(1, 3)):
            time.sleep(rng.uniform(0.0, 0.8))
            faults.append(_fault(rng, private_redis))
        loader.join()
        published += events
        print(f"round {round_no} (seed {SEED}): {len(events)} events, faults: {faults}")
        _assert_read_models_right(faulty, published, fault_worker)


def test_first_batch_after_a_flush_does_not_fence_out_the_replay(
    faulty: Settings, private_redis: PrivateRedis, fault_worker: Process
) -> None:
    """Regression (issue 11, case 2): Redis flushed between two halves of the same conversations.

    The first batch after the flush carries later turns of conversations whose earlier turns
    the flush erased. Before the fix it was applied before the sentinel check and moved those
    conversations' fences past the earlier records, so the replay that followed skipped them
    and the read models stayed short.
    """
    events = list(interleaved(random.Random(7), ["acme"], 24, time.time_ns() // 1000, open_at_once=24))
    half = len(events) // 2
    first, second = events[:half], events[half:]
    assert set(_turns(first)) & set(_turns(second)), "the halves must share conversations"
    _publish(faulty, first)
    _wait_settled(faulty, sum(_turns(first).values()), fault_worker)
    private_redis.flush()
    _publish(faulty, second)  # at once: its first batch meets the flushed Redis
    _assert_read_models_right(faulty, events, fault_worker)


def test_a_restart_from_an_older_snapshot_is_detected_and_restored(
    faulty: Settings, private_redis: PrivateRedis, fault_worker: Process
) -> None:
    """Redis comes back with data, but older than what it acknowledged (an RDB snapshot; a
    failover to a lagging replica is alike): the sentinel survived, so only the checkpoint
    being behind what the projector wrote tells. The same conversations go on throughout."""
    events = list(interleaved(random.Random(9), ["acme"], 24, time.time_ns() // 1000, open_at_once=24))
    third = len(events) // 3
    _publish(faulty, events[:third])
    _wait_settled(faulty, sum(_turns(events[:third]).values()), fault_worker)
    with private_redis.client() as client:
        client.save()  # the snapshot Redis will come back with
    _publish(faulty, events[third : 2 * third])
    _wait_settled(faulty, sum(_turns(events[: 2 * third]).values()), fault_worker)
    private_redis.kill()
    private_redis.start()  # loads the snapshot: a third of the turns and their fences are gone
    _publish(faulty, events[2 * third :])
    _assert_read_models_right(faulty, events, fault_worker)
    assert "Redis lost acknowledged writes" in fault_worker.log.read_text(errors="replace")


def test_projector_backs_off_while_redis_is_down_and_catches_up_after(
    faulty: Settings, private_redis: PrivateRedis, fault_worker: Process, metrics_port: int
) -> None:
    events = list(interleaved(random.Random(5), ["acme", "globex"], 30, time.time_ns() // 1000, run_id="d"))
    third = len(events) // 3
    _publish(faulty, events[:third])
    _wait_settled(faulty, sum(_turns(events[:third]).values()), fault_worker)
    private_redis.kill()
    _publish(faulty, events[third : 2 * third])  # turns arrive while Redis is down
    time.sleep(6.0)  # several backoff rounds
    assert fault_worker.popen.poll() is None, f"the worker died with Redis down:\n{fault_worker.log_tail()}"
    down = _metrics(metrics_port)
    assert down["ledgerflow_projector_redis_up"] == 0.0
    assert down["ledgerflow_projector_redis_outages_total"] >= 1
    private_redis.start()  # back, empty
    _publish(faulty, events[2 * third :])
    _assert_read_models_right(faulty, events, fault_worker)
    up = _metrics(metrics_port)
    assert up["ledgerflow_projector_redis_up"] == 1.0
    assert up["ledgerflow_projector_restores_total"] >= 1
    log = fault_worker.log.read_text(errors="replace")
    outages = log.count("projector: Redis unreachable")
    assert 1 <= outages <= 3, f"{outages} outage lines for one outage"
    assert "projector: Redis is back" in log


def _metrics(port: int) -> dict[str, float]:
    deadline = time.monotonic() + 30
    while True:
        try:
            text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    values: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("ledgerflow_projector_"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
