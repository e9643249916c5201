"""A Redis Cluster master SIGKILLed under steady writes through the edge and a worker: its replica
is promoted (``cluster-node-timeout`` 1 s in this test's private cluster), the clients follow the
new slot map, and nothing acknowledged is lost.

- Idempotency keys: every step the edge acknowledged (2xx) is retried with its Idempotency-Key
  and answered with the same event id, and no turn is on the log twice (the edge acknowledges a
  claim only once the master's replica confirmed it, ``WAIT 1``).
- Read models: once caught up, every turn has exactly one decision, each conversation's turn
  count equals its turns on the log, and ``ledgerflow audit`` is clean (read models equal to a
  rebuild from the log).
- Clients: every answer during the fault is a 2xx or a 503 problem+json with Retry-After, never a
  500 or a hang past the client's timeout; readiness answers 200 or 503.

Kafka is the session's; the Redis Cluster is this module's own (the session's stays untouched).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.logs import read_all
from ledgerflow.projections.keys import Keys
from ledgerflow.topics import CONVERSATION_EVENTS
from tests.integration.edgekit import bearer
from tests.integration.test_crash import _assert_audit_clean, _assert_one_decision_per_turn, _wait_settled
from tests.support.processes import Process, running_edge, start
from tests.support.rediscluster import PrivateCluster, private_cluster

CONVERSATIONS = 8
NODE_TIMEOUT_MS = 1000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateCluster]:
    with private_cluster(tmp_path_factory.mktemp("failover-cluster"), NODE_TIMEOUT_MS) as running:
        yield running


@pytest.fixture
def on_cluster(stack: Settings, cluster: PrivateCluster) -> Settings:
    """This test's topics on the session's Kafka, its read models on the private cluster."""
    prefixed = stack.with_overrides(
        redis_url=cluster.url, redis_external=True, topic_prefix=f"t{uuid.uuid4().hex[:10]}."
    )
    asyncio.run(ensure_topics(prefixed))
    return prefixed


@dataclass
class Load:
    """Steps posted with Idempotency-Keys until stopped; what each got back."""

    edge: str
    headers: dict[str, str]
    acked: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (conversation, event id)
    statuses: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        with httpx.Client(timeout=15) as client:
            i = 0
            while not self.stop.is_set():
                key, conv = f"k{i}", f"c{i % CONVERSATIONS}"
                self.post(client, key, conv)
                if i % 10 == 0:
                    self.ready(client)
                i += 1
                time.sleep(0.03)

    def post(self, client: httpx.Client, key: str, conv: str) -> httpx.Response | None:
        try:
            resp = client.post(
                f"{self.edge}/v1/conversation/step",
                json={"conversation_id": conv, "content": f"turn {key}"},
                headers=self.headers | {"Idempotency-Key": key},
                params={"wait": 0},
            )
        except httpx.HTTPError as exc:
            self.bad.append(f"{key}: {exc!r}")
            return None
        self.statuses[str(resp.status_code)] += 1
        if resp.is_success:
            self.acked[key] = (conv, resp.json()["event_id"])
        elif not _documented_503(resp):
            self.bad.append(f"{key}: {resp.status_code} {resp.text[:200]}")
        return resp

    def ready(self, client: httpx.Client) -> None:
        resp = client.get(f"{self.edge}/readyz")
        self.statuses[f"readyz {resp.status_code}"] += 1
        if resp.status_code != 200 and not _documented_503(resp):
            self.bad.append(f"readyz: {resp.status_code} {resp.text[:200]}")

    def wait_for(self, acked: int, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.acked) < acked:
            assert time.monotonic() < deadline, f"{len(self.acked)} of {acked} acknowledged: {self.statuses}"
            time.sleep(0.2)


def _documented_503(resp: httpx.Response) -> bool:
    return (
        resp.status_code == 503
        and resp.headers.get("content-type", "").startswith("application/problem+json")
        and "retry-after" in resp.headers
    )


def test_a_master_killed_under_load_loses_nothing_acknowledged(
    on_cluster: Settings, cluster: PrivateCluster, tmp_path: Path
) -> None:
    settings = on_cluster
    worker = start(settings, "worker", "worker", log_dir=tmp_path / "logs")
    try:
        with running_edge(settings, tmp_path / "logs") as (_, edge):
            load = Load(edge, bearer(settings))
            thread = threading.Thread(target=load.run)
            thread.start()
            try:
                load.wait_for(40)
                # The master of a conversation's read model (and of some idempotency keys) dies.
                victim = Keys.for_prefix(settings.topic_prefix).conversation("acme", "c0")
                killed = cluster.kill_master_of(victim)
                cluster.wait_for_failover(killed)
                assert cluster.master_of(victim) != killed
                load.wait_for(len(load.acked) + 60)
            finally:
                load.stop.set()
                thread.join(30)
            _check(settings, load, worker, tmp_path)
    finally:
        worker.stop()


def _check(settings: Settings, load: Load, worker: Process, tmp_path: Path) -> None:
    assert load.bad == [], (load.bad[:5], load.statuses)
    # Idempotency keys: each acknowledged step, retried, names its first event id.
    with httpx.Client(timeout=15) as client:
        for key, (conv, event_id) in load.acked.items():
            again = load.post(client, key, conv)
            assert again is not None and again.is_success, (key, again and again.text)
            assert again.json()["event_id"] == event_id, key
    records = asyncio.run(read_all(settings, settings.topic(CONVERSATION_EVENTS)))
    turns = [e for e in (codec.decode(r.value) for r in records) if e.type == "MessageSubmitted"]
    on_log = Counter(e.event_id for e in turns)
    assert [i for i, n in on_log.items() if n > 1] == []  # no step published twice
    assert {event_id for _, event_id in load.acked.values()} <= set(on_log)
    # Read models: caught up, one decision per turn, turn counts per conversation, audit clean.
    _wait_settled(settings, len(turns), [worker], timeout=120)
    _assert_one_decision_per_turn(settings, len(turns))
    per_conversation = Counter(e.subject for e in turns)
    with httpx.Client(timeout=15) as client:
        for conv, count in per_conversation.items():
            view = client.get(f"{load.edge}/v1/conversations/{conv}", headers=load.headers).json()
            assert view["turn_count"] == count, (conv, view)
    _assert_audit_clean(settings, tmp_path / "audit.json")
