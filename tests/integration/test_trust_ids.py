"""Issue 18, case 3 on the real edge, worker, Kafka and Redis: whatever the id grammar
allows can be written and read back through the API (``: @ . _ -`` in tenants and
conversation ids, the longest id), and an id outside it is a clear 404/422, never a 500."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest

from ledgerflow.config import Settings
from ledgerflow.contracts.ids import MAX_ID_LENGTH
from ledgerflow.kafka.admin import ensure_topics
from tests.support.processes import Process, running_edge

TIMEOUT_S = 60.0
PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def reader_edge(stack: Settings) -> Iterator[str]:
    """One edge process for the refusal tests (they write nothing): faster than one per test."""
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings))
    with running_edge(settings, stack.state_dir / "test-logs" / "test_trust_ids") as (_, base):
        yield base


def _write(edge: str, headers: dict[str, str], conv: str) -> None:
    started = {"type": "ConversationStarted", "subject": conv, "payload": {"actor": "bo", "model": "slm-2"}}
    turn = {
        "type": "MessageSubmitted",
        "subject": conv,
        "payload": {"turn_id": "t:1@x.y", "role": "user", "content": "hi", "model": "slm-2", "tokens": None},
    }
    for body in (started, turn):
        resp = httpx.post(f"{edge}/v1/events", json=body, headers=headers, timeout=10)
        assert resp.status_code == 202, resp.text


def _read_back(edge: str, headers: dict[str, str], conv: str, worker: Process) -> dict:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        resp = httpx.get(f"{edge}/v1/conversations/{quote(conv, safe='')}", headers=headers, timeout=10)
        assert resp.status_code in (200, 404), resp.text
        if resp.status_code == 200 and resp.json()["turn_count"] == 1:
            return resp.json()
        time.sleep(0.3)
    raise AssertionError(f"{conv!r} was written but never readable: {resp.text}\n{worker.log_tail()}")


def test_every_kind_of_id_the_grammar_allows_is_written_and_read_back(
    worker: Process, edge: str, tokens
) -> None:
    tag = uuid.uuid4().hex[:8]
    tenant = f"team:blue@eu.1-{tag}"
    headers = {"Authorization": f"Bearer {tokens(tenant, 'producer,subscriber')}"}
    ids = [
        f"conv:{tag}@host.example",
        f"{tag}.v1_x-y",
        f"9{tag}:a:b:c",
        (f"L{tag}" + "a.b:c@d_e-" * 20)[:MAX_ID_LENGTH],
    ]
    for conv in ids:
        _write(edge, headers, conv)
    for conv in ids:
        view = _read_back(edge, headers, conv, worker)
        assert view["turns"][0]["content"] == "hi"


@pytest.mark.parametrize(
    "conv",
    ["a b", "{acme}", "会话-1", "x" * (MAX_ID_LENGTH + 1), "-lead", "a\tb", "a%2Fb", "caf\u00e9"],
)
def test_a_conversation_id_outside_the_grammar_is_a_clear_404(reader_edge: str, tokens, conv: str) -> None:
    edge = reader_edge
    headers = {"Authorization": f"Bearer {tokens('acme', 'subscriber')}"}
    resp = httpx.get(f"{edge}/v1/conversations/{quote(conv, safe='')}", headers=headers, timeout=10)
    assert resp.status_code == 404, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    detail = resp.json()["detail"]
    assert detail.startswith("no such conversation: ") and "is not an id" in detail


@pytest.mark.parametrize("conv", ["a b", "{acme}", "会话-1", "x" * (MAX_ID_LENGTH + 1)])
def test_a_stream_of_a_non_id_conversation_is_422(reader_edge: str, tokens, conv: str) -> None:
    edge = reader_edge
    headers = {"Authorization": f"Bearer {tokens('acme', 'subscriber')}"}
    resp = httpx.get(
        f"{edge}/v1/conversation/stream", params={"conversation_id": conv}, headers=headers, timeout=10
    )
    assert resp.status_code == 422, resp.text
    assert "conversation_id" in resp.json()["detail"]
