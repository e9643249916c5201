"""Issue 18, case 5 (and the read paths of issue 11's dependency faults) on a PRIVATE Kafka
and Redis started by this module (the shared stack is never paused or stopped):

- ``/readyz`` turns 503 + Retry-After naming ``kafka`` when the broker is paused
  (SIGSTOP) or stopped, and naming ``redis`` when Redis is paused or stopped; it is 200
  again once they are back, with no restart of the edge;
- meanwhile the read paths answer 503 problem+json with ``Retry-After``, never a 500 or
  a hang: SSE streams while Kafka is out, every read-model GET (``REDIS_READS``) while Redis is.

Prints how long each fault took to show in ``/readyz`` (documented bound: 5 s).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ledgerflow.config import Settings
from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import manage
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import stop
from tests.integration import edgekit
from tests.support.privatestack import private_settings, private_stack
from tests.support.processes import Process, start, wait_http_ready

PROBLEM = "application/problem+json"
READY_WITHIN_S = 5.0  # ledgerflow.api.health.READY_WITHIN_S: the documented bound
POLL_LIMIT_S = 30.0  # how long the test waits for a state before failing (generous: a loaded CI host)
RECOVERY_LIMIT_S = 120.0


REDIS_READS = (  # every GET that answers from the read models: a paused Redis is a 503, never a hang
    "/v1/overview",
    "/v1/conversations",
    "/v1/conversations/c1",
    "/v1/conversations/c1?consistency_token=0:0",
    "/v1/training/status",
    "/v1/usage",
    "/v1/forecast?model=m",
)


@dataclass
class Private:
    settings: Settings
    nodes: manage.StackNodes
    edge: Process
    base: str
    token: str

    def signal(self, which: str, sig: int) -> None:
        node = self.nodes.kafka if which == "kafka" else self.nodes.redis
        pid = node.process.pid()
        assert pid is not None, f"the private {which} is not running"
        os.kill(pid, sig)

    def get(self, path: str) -> httpx.Response:
        """A request with a client timeout: a hang fails the test instead of blocking it."""
        return httpx.get(self.base + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=15)


def _say(msg: str) -> None:
    print(f"[private stack] {msg}", flush=True)


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Private]:
    state = Path(tmp_path_factory.mktemp("private-stack"))
    settings = private_settings(state, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    with private_stack(settings, say=_say) as nodes:
        edge = start(settings, "edge", "serve", log_dir=state / "logs")
        try:
            base = f"http://{settings.http}"
            wait_http_ready(edge, base)
            token = edgekit.token(settings, "ops", roles="subscriber,admin")
            yield Private(settings, nodes, edge, base, token)
        finally:
            edge.stop()


def _wait_ready(p: Private, status: int, limit: float = POLL_LIMIT_S) -> tuple[httpx.Response, float]:
    began = time.monotonic()
    while True:
        resp = httpx.get(f"{p.base}/readyz", timeout=15)
        if resp.status_code == status:
            return resp, time.monotonic() - began
        if time.monotonic() - began > limit:
            raise AssertionError(
                f"/readyz still {resp.status_code} after {limit:.0f} s: {resp.text}\n{p.edge.log_tail()}"
            )
        time.sleep(0.2)


def _assert_unavailable(resp: httpx.Response, dependency: str | None = None) -> dict:
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert int(resp.headers["retry-after"]) > 0
    body = resp.json()
    if dependency is not None:
        assert body["checks"][dependency] != "ok", body
        assert dependency in body["detail"], body
    return body


def test_ready_when_both_answer(private: Private) -> None:
    resp, _ = _wait_ready(private, 200)
    assert resp.json()["checks"] == {"redis": "ok", "kafka": "ok"}


def test_a_paused_broker_shows_in_readyz_and_streams_answer_503(private: Private) -> None:
    private.signal("kafka", signal.SIGSTOP)
    try:
        resp, took = _wait_ready(private, 503)
        print(f"\npaused broker: /readyz 503 after {took:.1f} s")
        body = _assert_unavailable(resp, "kafka")
        assert body["checks"]["redis"] == "ok"
        _assert_unavailable(private.get("/v1/streams/tenant"))
        _assert_unavailable(private.get("/v1/conversation/stream?conversation_id=c1"))
        assert private.get("/v1/conversations/c1").status_code == 404  # Redis reads go on
    finally:
        private.signal("kafka", signal.SIGCONT)
    _wait_ready(private, 200)


def test_a_paused_then_stopped_redis_shows_in_readyz_and_reads_answer_503(private: Private) -> None:
    private.signal("redis", signal.SIGSTOP)
    try:
        resp, took = _wait_ready(private, 503)
        print(f"\npaused redis: /readyz 503 after {took:.1f} s")
        body = _assert_unavailable(resp, "redis")
        assert body["checks"]["kafka"] == "ok"
        answers = {}
        for path in REDIS_READS:
            began = time.monotonic()
            answers[path] = private.get(path)
            print(f"{path}: {answers[path].status_code} after {time.monotonic() - began:.2f} s")
        wrong = {
            path: f"{r.status_code} {r.text[:120]}" for path, r in answers.items() if r.status_code != 503
        }
        assert not wrong, f"read-model GETs not answering 503 while Redis is paused: {wrong}"
        for resp in answers.values():
            _assert_unavailable(resp)
    finally:
        private.signal("redis", signal.SIGCONT)
    _wait_ready(private, 200)

    stop(private.nodes.redis.process)
    try:
        resp, took = _wait_ready(private, 503)
        print(f"stopped redis: /readyz 503 after {took:.1f} s")
        _assert_unavailable(resp, "redis")
        _assert_unavailable(private.get("/v1/conversations/c1"))
    finally:
        redis_stack.start(private.nodes.redis)
    _wait_ready(private, 200)
    assert private.get("/v1/conversations/c1").status_code == 404


def test_a_stopped_broker_shows_in_readyz_and_the_edge_recovers_when_it_is_back(private: Private) -> None:
    stop(private.nodes.kafka.process)
    try:
        resp, took = _wait_ready(private, 503)
        print(f"\nstopped broker: /readyz 503 after {took:.1f} s")
        _assert_unavailable(resp, "kafka")
        _assert_unavailable(private.get("/v1/streams/tenant"))
    finally:
        kafka_stack.start(private.nodes.kafka)
    _wait_ready(private, 200, RECOVERY_LIMIT_S)
