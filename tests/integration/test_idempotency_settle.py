"""What the edge answers for a claim left by a request that died after claiming and before it
recorded its position (its edge crashed, or its publish outlived the deadline): ``409`` with
``Retry-After: 1`` while the claim is younger than ``STALE_S``; after that the next request with
the key takes the claim over and publishes the claim's event id (never a new one), and a retry is
answered from the recorded position. A claim of a different request is never taken over (422).

The dead request is the claim it left in Redis, written here as the edge writes it (the real edge,
Kafka and Redis of the session; each test has its own topic prefix, so its own keys)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis as redis_sync

from ledgerflow.api.idempotency import HORIZON_S, STALE_S, Claim, event_key, fingerprint, step_key
from ledgerflow.config import Settings
from ledgerflow.redisclient import sync_client
from tests.integration.edgekit import assert_problem, bearer, events_on_log, turn

DIED_AT = time.time() - STALE_S - 5  # claimed longer ago than STALE_S, never published


@pytest.fixture
def redis(settings: Settings) -> Iterator[redis_sync.Redis]:
    client = sync_client(settings.redis_url)
    yield client
    client.close()


def _step(edge: str, settings: Settings, key: str, conv: str, content: str) -> httpx.Response:
    return httpx.post(
        f"{edge}/v1/conversation/step",
        json={"conversation_id": conv, "content": content},
        headers=bearer(settings, "alice") | {"Idempotency-Key": key},
        params={"wait": 0},
        timeout=10,
    )


def test_a_step_claim_left_behind_is_in_flight_then_taken_over_with_its_event_id(
    settings: Settings, edge: str, redis: redis_sync.Redis
) -> None:
    key, conv, content = uuid.uuid4().hex, "conv-died", "the turn whose request died"
    stored = step_key(settings.topic_prefix, "acme", "alice", key)
    asked = fingerprint({"conversation_id": conv, "content": content, "model": "unspecified"})
    orphan = str(uuid.uuid4())
    redis.set(stored, Claim(asked, orphan, time.time()).encode(), ex=HORIZON_S)

    busy = _step(edge, settings, key, conv, content)
    assert_problem(busy, 409)
    assert busy.headers["retry-after"] == "1"
    assert events_on_log(settings) == []

    redis.set(stored, Claim(asked, orphan, DIED_AT).encode(), keepttl=True)
    taken = _step(edge, settings, key, conv, content)
    assert taken.status_code == 202, taken.text
    assert taken.json()["event_id"] == orphan  # the claim's event id, not the new request's
    again = _step(edge, settings, key, conv, content)
    assert again.status_code == 202, again.text
    assert (again.json()["event_id"], again.json()["consistency_token"]) == (
        orphan,
        taken.json()["consistency_token"],
    )
    assert [e.event_id for e in events_on_log(settings)] == [orphan]
    settled = Claim.decode(redis.get(stored))  # type: ignore[arg-type]
    assert (settled.event_id, settled.position) == (orphan, taken.json()["consistency_token"])
    assert 0 < redis.ttl(stored) <= HORIZON_S  # the takeover kept the claim's expiry


def test_a_stale_claim_of_another_request_is_not_taken_over(
    settings: Settings, edge: str, redis: redis_sync.Redis
) -> None:
    key = uuid.uuid4().hex
    stored = step_key(settings.topic_prefix, "acme", "alice", key)
    other = fingerprint({"conversation_id": "conv-x", "content": "another turn", "model": "unspecified"})
    left = Claim(other, str(uuid.uuid4()), DIED_AT)
    redis.set(stored, left.encode(), ex=HORIZON_S)
    refused = _step(edge, settings, key, "conv-x", "not the turn that claimed the key")
    assert assert_problem(refused, 422)["detail"] == "Idempotency-Key reused with a different request"
    assert events_on_log(settings) == []
    assert Claim.decode(redis.get(stored)) == left  # type: ignore[arg-type]


def test_an_event_id_claim_left_behind_is_in_flight_then_published_once(
    settings: Settings, edge: str, redis: redis_sync.Redis
) -> None:
    event_id = str(uuid.uuid4())
    body = turn("conv-ingest", "an ingested turn") | {"event_id": event_id}
    stored = event_key(settings.topic_prefix, "acme", event_id)
    asked = fingerprint(body | {"tenant": "acme"})  # the edge fills in the token's tenant
    redis.set(stored, Claim(asked, event_id, time.time()).encode(), ex=HORIZON_S)

    def ingest() -> httpx.Response:
        return httpx.post(f"{edge}/v1/events", json=body, headers=bearer(settings), timeout=10)

    busy = ingest()
    assert_problem(busy, 409)
    assert busy.headers["retry-after"] == "1"
    redis.set(stored, Claim(asked, event_id, DIED_AT).encode(), keepttl=True)
    taken, again = ingest(), ingest()
    assert (taken.status_code, taken.json()["duplicate"]) == (202, False), taken.text
    assert (again.status_code, again.json()["duplicate"]) == (202, True), again.text
    assert again.json()["consistency_token"] == taken.json()["consistency_token"]
    assert [e.event_id for e in events_on_log(settings)] == [event_id]
