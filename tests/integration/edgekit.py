"""Shared helpers of the edge's integration tests: tokens, problem answers, the turns on the log."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from ledgerflow.auth.devkeys import ensure_dev_keys
from ledgerflow.auth.tokens import mint_token
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.kafka.logs import read_all


def token(
    stack: Settings, sub: str, tenant: str = "acme", roles: str = "producer,subscriber", **claims: Any
) -> str:
    """A token signed with the stack's dev key, as the edge of ``stack`` accepts it."""
    keys = ensure_dev_keys(stack.state_dir)
    return mint_token(
        keys, sub=sub, tenant=tenant, roles=roles, issuer=stack.issuer, audience=stack.audience, **claims
    )


def bearer(
    stack: Settings, sub: str = "alice", tenant: str = "acme", roles: str = "producer,subscriber"
) -> dict:
    return {"Authorization": f"Bearer {token(stack, sub, tenant, roles)}"}


def events_on_log(settings: Settings) -> list[Event]:
    """Every record of this test's ``conversation.events``, decoded."""
    raws = asyncio.run(read_all(settings, settings.topic("conversation.events")))
    return [codec.decode(r.value) for r in raws]


def assert_problem(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json"), resp.headers
    body: dict = resp.json()
    assert body["status"] == status
    return body


def turn(conv: str, content: str = "hi", turn_id: str = "t1", **payload: object) -> dict:
    return {
        "type": "MessageSubmitted",
        "subject": conv,
        "payload": {"turn_id": turn_id, "role": "user", "content": content, "model": "m", "tokens": None}
        | payload,
    }
