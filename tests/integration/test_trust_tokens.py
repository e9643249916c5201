"""Issue 18 on the real edge (uvicorn process, Kafka, Redis): a token's tenant and subject
must be ids (case 3), a token may not live longer than the maximum (case 5), and no 401
quotes the credential or a codec error (case 5)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from ledgerflow.auth.devkeys import ensure_dev_keys
from ledgerflow.config import Settings
from ledgerflow.kafka.admin import ensure_topics
from tests.support.processes import running_edge

PROBLEM = "application/problem+json"
YEAR = 365 * 86_400


@pytest.fixture(scope="module")
def edge(stack: Settings) -> Iterator[str]:
    """One edge process for the whole module (these tests only read): faster than one per test."""
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings))
    with running_edge(settings, stack.state_dir / "test-logs" / "test_trust_tokens") as (_, base):
        yield base


@pytest.fixture
def sign(stack: Settings):  # type: ignore[no-untyped-def]
    """Sign arbitrary claims with the edge's own dev key (``mint_token`` refuses bad ones)."""
    keys = ensure_dev_keys(stack.state_dir)

    def make(**overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": stack.issuer,
            "aud": stack.audience,
            "sub": "alice",
            "tenant": "acme",
            "roles": ["subscriber", "producer"],
            "iat": now,
            "nbf": now,
            "exp": now + 600,
            "jti": str(uuid.uuid4()),
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, keys.private_key_pem, algorithm=keys.alg, headers={"kid": keys.kid})

    return make


def _refused(resp: httpx.Response, credential: str) -> str:
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    detail: str = resp.json()["detail"]
    assert "\n" not in detail
    assert credential[:16] not in resp.text and credential[:16] not in str(resp.headers)
    return detail


@pytest.mark.parametrize("tenant", ["X}:a", "a/b", "acme corp", "会话", "x" * 200])
def test_a_tenant_outside_the_id_grammar_gets_401_naming_the_claim(edge: str, sign, tenant: str) -> None:
    token = sign(tenant=tenant)
    resp = httpx.get(f"{edge}/v1/streams/tenant", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    detail = _refused(resp, token)
    assert detail.startswith("token claim 'tenant'")


def test_a_subject_outside_the_id_grammar_gets_401(edge: str, sign) -> None:
    token = sign(sub="mallory}:x")
    event = {"type": "ConversationClosed", "subject": "c1", "payload": {"reason": "x"}}
    resp = httpx.post(
        f"{edge}/v1/events", json=event, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert _refused(resp, token).startswith("token claim 'sub'")


def test_colliding_tenants_of_issue_18_cannot_both_authenticate(edge: str, sign) -> None:
    good, bad = sign(tenant="X"), sign(tenant="X}:a")
    url = f"{edge}/v1/conversations/c1"
    assert httpx.get(url, headers={"Authorization": f"Bearer {good}"}, timeout=10).status_code == 404
    _refused(httpx.get(url, headers={"Authorization": f"Bearer {bad}"}, timeout=10), bad)


def test_a_token_valid_for_a_hundred_years_gets_401(edge: str, sign) -> None:
    token = sign(exp=int(time.time()) + 100 * YEAR)
    resp = httpx.get(f"{edge}/v1/conversations/c1", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    detail = _refused(resp, token)
    assert "exceeds the maximum 86400 s (24 h)" in detail


def test_a_token_without_iat_counts_its_lifetime_from_now(edge: str, sign) -> None:
    token = sign(iat=None, nbf=None, exp=int(time.time()) + 2 * 86_400)
    resp = httpx.get(f"{edge}/v1/conversations/c1", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert "exceeds the maximum" in _refused(resp, token)


def test_a_token_of_a_day_is_accepted(edge: str, sign) -> None:
    token = sign(exp=int(time.time()) + 86_400)
    resp = httpx.get(f"{edge}/v1/conversations/c1", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert resp.status_code == 404, resp.text  # authenticated; no such conversation


def test_a_token_sent_without_the_bearer_scheme_is_not_echoed(edge: str, sign) -> None:
    token = sign()
    resp = httpx.get(f"{edge}/v1/conversations/c1", headers={"Authorization": token}, timeout=10)
    assert "Bearer <token>" in _refused(resp, token)


def test_bearer_abc_def_ghi_gets_a_clear_401(edge: str) -> None:
    resp = httpx.get(
        f"{edge}/v1/conversations/c1", headers={"Authorization": "Bearer abc.def.ghi"}, timeout=10
    )
    detail = _refused(resp, "abc.def.ghi")
    assert "not a JWT" in detail and "codec" not in detail and "utf-8" not in detail
