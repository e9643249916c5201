"""Policy headers at the real edge: every answer names the constitution in force, and a
``step`` under a stale ``Ledgerflow-If-Constitution`` precondition is refused with 412 and
publishes nothing (checked on the topic)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from ledgerflow.auth.devkeys import ensure_policy_keys
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.kafka.logs import read_all
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.rulepacks import publish_pack
from ledgerflow.topics import CONVERSATION_EVENTS
from tests.support.processes import Process


def _document(tenant: str, description: str) -> dict[str, Any]:
    doc = builtin_default_pack().document()
    doc.pop("version", None)
    return {**doc, "tenant": tenant, "description": description}


def _turns(settings: Settings, conversation: str) -> int:
    records = asyncio.run(read_all(settings, settings.topic(CONVERSATION_EVENTS)))
    return sum(1 for r in records if codec.decode(r.value or b"").subject == conversation)


def _step(edge: str, headers: dict[str, str], conversation: str, precondition: str, wait: int = 20) -> Any:
    return httpx.post(
        f"{edge}/v1/conversation/step?wait={wait}",
        json={"conversation_id": conversation, "content": "hello"},
        headers={**headers, "Ledgerflow-If-Constitution": precondition},
        timeout=30,
    )


def test_step_under_a_stale_constitution_is_412_and_publishes_nothing(
    settings: Settings, worker: Process, edge: str, tokens: Any
) -> None:
    tenant = f"pc-{uuid.uuid4().hex[:8]}"
    kid = ensure_policy_keys(settings.state_dir).kid
    headers = {"Authorization": f"Bearer {tokens(tenant, 'producer,subscriber')}"}
    first = asyncio.run(publish_pack(settings, _document(tenant, "reviewed v1"), producer_name="test"))
    current = f"sha256={first.constitution_hash}"

    ok = _step(edge, headers, "c-ok", current, 20)
    assert ok.status_code == 200, ok.text
    assert ok.headers["Ledgerflow-Constitution"] == f"{current}; version=1; signer={kid}"
    assert (ok.json()["constitution_hash"], ok.json()["signer_kid"]) == (first.constitution_hash, kid)

    second = asyncio.run(publish_pack(settings, _document(tenant, "changed v2"), producer_name="test"))
    stale = _step(edge, headers, "c-stale", current, 5)
    assert stale.status_code == 412, stale.text
    assert stale.headers["content-type"] == "application/problem+json"
    problem = stale.json()
    assert problem["required"] == [current]
    assert problem["in_force"] == f"sha256={second.constitution_hash}" and problem["in_force_version"] == 2
    assert stale.headers["Ledgerflow-Constitution"].startswith(
        f"sha256={second.constitution_hash}; version=2"
    )

    malformed = _step(edge, headers, "c-stale", "W/abc")
    assert malformed.status_code == 422, malformed.text
    assert _turns(settings, "c-stale") == 0  # neither the 412 nor the 422 published the turn

    either = f"sha256={'0' * 64}, sha256={second.constitution_hash}"
    now = _step(edge, headers, "c-stale", either, 20)
    assert now.status_code == 200, now.text
    assert now.json()["rule_pack_version"] == 2
    assert _turns(settings, "c-stale") == 1

    dry = httpx.post(f"{edge}/v1/evaluate", json={"content": "hello"}, headers=headers, timeout=30)
    assert dry.status_code == 200, dry.text
    assert (
        dry.headers["Ledgerflow-Constitution"]
        == f"sha256={second.constitution_hash}; version=2; signer={kid}"
    )
    with httpx.stream(
        "GET", f"{edge}/v1/conversation/stream?conversation_id=c-ok", headers=headers, timeout=30
    ) as stream:
        assert stream.status_code == 200
        assert stream.headers["Ledgerflow-Constitution"].startswith(f"sha256={second.constitution_hash}")
