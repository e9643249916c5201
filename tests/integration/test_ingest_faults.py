"""Dependency faults have one face (issue 11, cases 3 and 10): with Redis down or the broker
restarting, the edge answers 503 problem+json with Retry-After within its deadline, never a
500 or a hang, publishes nothing it cannot account for, and recovers by itself.

Each test starts its OWN Redis or Kafka (free ports, tmp state dir) and stops it; the
shared stack is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from ledgerflow.api.idempotency import Claim, event_key, step_key
from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.logs import read_all
from ledgerflow.redisclient import sync_client
from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import stop
from tests.integration.edgekit import bearer
from tests.support.privatestack import free_port_pair
from tests.support.processes import free_port, pipeline_settled, running_edge, start

CLIENT_TIMEOUT_S = 20.0
"""Far above the edge's documented deadline (api/faults.py): a request still open after
it has hung, which is what the broker-restart case used to do."""


def _headers(stack: Settings, **extra: str) -> dict[str, str]:
    return bearer(stack) | extra


def _assert_503(resp: httpx.Response) -> None:
    assert resp.status_code == 503, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert int(resp.headers["retry-after"]) > 0


def _subjects_on_log(settings: Settings) -> list[str]:
    raws = asyncio.run(read_all(settings, settings.topic("conversation.events")))
    return [codec.decode(r.value).subject for r in raws]


def _turn(conv: str) -> dict:
    return {
        "type": "MessageSubmitted",
        "subject": conv,
        "event_id": str(uuid.uuid4()),
        "payload": {"turn_id": "t1", "role": "user", "content": "hi", "model": "m", "tokens": None},
    }


def _step(edge: str, headers: dict[str, str], conv: str) -> httpx.Response:
    return httpx.post(
        f"{edge}/v1/conversation/step",
        json={"conversation_id": conv, "content": "hello"},
        headers=headers,
        params={"wait": 0},
        timeout=CLIENT_TIMEOUT_S,
    )


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[redis_stack.RedisNode]:
    node = redis_stack.RedisNode(tmp_path, "127.0.0.1", free_port())
    redis_stack.start(node)
    yield node
    stop(node.process)


def test_redis_down_is_503_with_retry_after_and_nothing_is_published(
    settings: Settings, private_redis: redis_stack.RedisNode, log_dir: Path
) -> None:
    ours = settings.with_overrides(redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    with running_edge(ours, log_dir) as (proc, edge):
        stop(private_redis.process)
        # Step 1: every write path answers 503 + Retry-After, and publishes nothing.
        _assert_503(_step(edge, _headers(ours, **{"Idempotency-Key": "k-1"}), "with-key"))
        _assert_503(_step(edge, _headers(ours), "without-key"))
        _assert_503(httpx.post(f"{edge}/v1/events", json=_turn("by-id"), headers=_headers(ours), timeout=20))
        _assert_503(httpx.get(f"{edge}/v1/conversations/c1", headers=_headers(ours), timeout=20))
        assert _subjects_on_log(ours) == []
        # Step 2: Redis comes back (empty): the edge recovers by itself, one turn per request.
        redis_stack.start(private_redis)
        headers = _headers(ours, **{"Idempotency-Key": "k-1"})
        answers = [_step(edge, headers, "with-key") for _ in range(2)]
        assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
        assert answers[0].json()["event_id"] == answers[1].json()["event_id"]
        assert _subjects_on_log(ours) == ["with-key"]
    assert "Traceback" not in proc.log_tail(400)


def test_a_step_retried_after_redis_lost_its_data_is_the_same_turn(
    settings: Settings, private_redis: redis_stack.RedisNode, log_dir: Path
) -> None:
    """Redis losing its data (here a FLUSHALL; a restart without persistence is the same) took the
    step's idempotency claim with it: the client's retry with the same Idempotency-Key was
    published as a second turn under a new event id, decided and counted twice. The event id is
    now derived from the key and the request, so the retry is a duplicate delivery, decided once."""
    ours = settings.with_overrides(redis_url=f"redis://127.0.0.1:{private_redis.port}/0")
    headers = _headers(ours, **{"Idempotency-Key": "k-lost"})
    with running_edge(ours, log_dir) as (proc, edge):
        first = _step(edge, headers, "lost-claim")
        assert first.status_code == 202, first.text
        with contextlib.closing(redis.Redis.from_url(ours.redis_url)) as r:
            r.flushall()
        retry = _step(edge, headers, "lost-claim")
        assert retry.status_code == 202, retry.text
        assert retry.json()["event_id"] == first.json()["event_id"], "the retry published a new turn"
        assert "Traceback" not in proc.log_tail(400)
    assert _subjects_on_log(ours) == ["lost-claim", "lost-claim"]  # one turn, delivered twice
    worker = start(ours, "worker", "worker", log_dir=log_dir)
    try:
        deadline = time.monotonic() + 90
        while not (settled := asyncio.run(pipeline_settled(ours, 1)))[0]:
            assert worker.popen.poll() is None and time.monotonic() < deadline, (settled, worker.log_tail())
            time.sleep(0.5)
    finally:
        worker.stop()
    report = asyncio.run(run_audit(ours, projections=True, progress=False, grace_s=0))
    assert report.clean, [str(f) for f in report.findings[:5]]
    assert (report.stats["turns"], report.stats["duplicate deliveries"]) == (1, 1), report.stats


@pytest.fixture
def private_kafka(tmp_path: Path) -> Iterator[kafka_stack.KafkaNode]:
    node = kafka_stack.KafkaNode(tmp_path, "127.0.0.1", free_port_pair())
    kafka_stack.start(node)
    yield node
    stop(node.process)


def test_broker_restart_is_503_within_the_deadline_then_recovers(
    settings: Settings, private_kafka: kafka_stack.KafkaNode, log_dir: Path
) -> None:
    ours = settings.with_overrides(kafka_bootstrap=f"127.0.0.1:{private_kafka.port}")
    asyncio.run(ensure_topics(ours))
    with running_edge(ours, log_dir) as (proc, edge):
        ok = httpx.post(f"{edge}/v1/events", json=_turn("before"), headers=_headers(ours), timeout=20)
        assert ok.status_code == 202, ok.text
        stop(private_kafka.process)
        # Step 1: the broker is down: 503 + Retry-After, not a hang (the client gives up after 20 s).
        during = _turn("during")
        _assert_503(httpx.post(f"{edge}/v1/events", json=during, headers=_headers(ours), timeout=20))
        _assert_503(_step(edge, _headers(ours, **{"Idempotency-Key": "k-2"}), "during-step"))
        # Their claims were released: kept with their event ids, stale at once, so a retry is not
        # held off as in flight and publishes the *same* event id (the publish may have landed).
        with contextlib.closing(sync_client(ours.redis_url)) as redis:
            raw_event = redis.get(event_key(ours.topic_prefix, "acme", during["event_id"]))
            raw_step = redis.get(step_key(ours.topic_prefix, "acme", "alice", "k-2"))
        assert raw_event is not None and raw_step is not None, "a failed publish deleted its claim"
        event_claim, step_claim = Claim.decode(raw_event), Claim.decode(raw_step)
        assert (event_claim.event_id, event_claim.claimed_at, event_claim.position) == (
            during["event_id"],
            0.0,
            None,
        )
        assert (step_claim.claimed_at, step_claim.position) == (0.0, None)
        # Step 2: the broker is back: requests succeed again without restarting the edge.
        kafka_stack.start(private_kafka)
        deadline = time.monotonic() + 90
        while True:
            resp = httpx.post(f"{edge}/v1/events", json=_turn("after"), headers=_headers(ours), timeout=20)
            if resp.status_code == 202 or time.monotonic() > deadline:
                break
            _assert_503(resp)
            time.sleep(1)
        assert resp.status_code == 202, resp.text
        retry = _step(edge, _headers(ours, **{"Idempotency-Key": "k-2"}), "during-step")
        assert retry.status_code == 202, retry.text
        assert retry.json()["event_id"] == step_claim.event_id, "the retry published a new event id"
        again = httpx.post(f"{edge}/v1/events", json=during, headers=_headers(ours), timeout=20)
        assert (again.status_code, again.json()["duplicate"]) == (202, False), again.text
    assert "Traceback" not in proc.log_tail(400)
