"""Trust boundaries of the edge's write paths (issue 18, cases 1-3), on the real edge,
Kafka and Redis: attribution is derived from the token, idempotency keys are scoped to
(tenant, token subject, key) and bound to the request they were first used with."""

from __future__ import annotations

import uuid

import httpx
import pytest

from ledgerflow.config import Settings
from tests.integration.edgekit import assert_problem, bearer, events_on_log, turn


@pytest.mark.parametrize("claimed", ["edge:alice", "ledgerflow-policy", "ledgerflow-training"])
def test_a_client_supplied_producer_is_refused_and_nothing_is_published(
    settings: Settings, edge: str, claimed: str
) -> None:
    conv = f"c-{uuid.uuid4().hex[:8]}"
    headers = bearer(settings, sub="mallory")
    resp = httpx.post(
        f"{edge}/v1/events", json=turn(conv) | {"producer": claimed}, headers=headers, timeout=10
    )
    assert "producer" in assert_problem(resp, 422)["detail"]
    step = httpx.post(
        f"{edge}/v1/conversation/step",
        json={"conversation_id": conv, "content": "x", "producer": claimed},
        headers=headers,
        params={"wait": 0},
        timeout=10,
    )
    assert_problem(step, 422)
    assert events_on_log(settings) == []


def test_the_producer_is_the_token_subject(settings: Settings, edge: str) -> None:
    conv = f"c-{uuid.uuid4().hex[:8]}"
    assert (
        httpx.post(
            f"{edge}/v1/events", json=turn(conv), headers=bearer(settings, "mallory"), timeout=10
        ).status_code
        == 202
    )
    step = httpx.post(
        f"{edge}/v1/conversation/step",
        json={"conversation_id": conv, "content": "x"},
        headers=bearer(settings, "bob"),
        params={"wait": 0},
        timeout=10,
    )
    assert step.status_code == 202, step.text
    assert sorted(e.producer for e in events_on_log(settings)) == ["edge:bob", "edge:mallory"]


def _step(edge: str, headers: dict, conv: str, content: str) -> httpx.Response:
    return httpx.post(
        f"{edge}/v1/conversation/step",
        json={"conversation_id": conv, "content": content},
        headers=headers,
        params={"wait": 0},
        timeout=10,
    )


def test_the_same_idempotency_key_of_two_users_is_two_requests(settings: Settings, edge: str) -> None:
    key = {"Idempotency-Key": "shared-key-1"}
    alice = _step(edge, bearer(settings, "alice") | key, "conv-a", "alice's turn")
    bob = _step(edge, bearer(settings, "bob") | key, "conv-b", "bob's turn, different content")
    assert alice.status_code == bob.status_code == 202, (alice.text, bob.text)
    assert alice.json()["event_id"] != bob.json()["event_id"]
    on_log = {e.subject: e.payload.content for e in events_on_log(settings)}  # type: ignore[union-attr]
    assert on_log == {"conv-a": "alice's turn", "conv-b": "bob's turn, different content"}


def test_the_same_idempotency_key_in_two_tenants_is_two_requests(settings: Settings, edge: str) -> None:
    key = {"Idempotency-Key": "a:b"}
    one = _step(edge, bearer(settings, "alice", tenant="x") | key, "conv-1", "tenant x")
    two = _step(edge, bearer(settings, "alice", tenant="x.a") | key, "conv-1", "tenant x.a")
    assert one.json()["event_id"] != two.json()["event_id"]
    assert sorted(e.tenant for e in events_on_log(settings)) == ["x", "x.a"]


def test_a_key_reused_with_a_different_request_is_422_and_publishes_nothing(
    settings: Settings, edge: str
) -> None:
    headers = bearer(settings, "alice") | {"Idempotency-Key": uuid.uuid4().hex}
    first = _step(edge, headers, "conv-a", "first")
    again = _step(edge, headers, "conv-a", "first")
    other = _step(edge, headers, "conv-a", "something else")
    assert first.status_code == again.status_code == 202
    assert again.json()["event_id"] == first.json()["event_id"]
    assert again.json()["consistency_token"] == first.json()["consistency_token"]
    assert assert_problem(other, 422)["detail"] == "Idempotency-Key reused with a different request"
    assert [e.payload.content for e in events_on_log(settings)] == ["first"]  # type: ignore[union-attr]
