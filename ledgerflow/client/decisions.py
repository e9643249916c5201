"""``step`` with an idempotency key: publish a user turn and get its policy decision.

    async with Decisions("http://127.0.0.1:8700", token=token) as decisions:
        result = await decisions.step("c1", "Can you summarise the report?")
        if not result.pending:
            print(result.decision.outcome)

Every call carries an ``Idempotency-Key`` (a fresh UUID unless you pass one, e.g. your own
request id): the helper's own retries (lost connection, 503/429, a 409 while the first request
with the key is still publishing, a 401 answered with a fresh token) and yours with the same
key publish the turn once and answer the same decision.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from ledgerflow.client.edge_http import EdgeHttp, TokenSource


@dataclass(frozen=True, slots=True)
class StepDecision:
    """A policy decision as the step answer carries it."""

    outcome: str
    score: float
    matched_rules: tuple[str, ...]
    rule_pack_version: int
    constitution_hash: str
    training_version: int
    redactions: tuple[tuple[int, int], ...]
    decision_event_id: str | None

    @classmethod
    def from_answer(cls, body: dict[str, Any]) -> StepDecision:
        return cls(
            outcome=body["outcome"],
            score=float(body["score"]),
            matched_rules=tuple(body["matched_rules"]),
            rule_pack_version=int(body["rule_pack_version"]),
            constitution_hash=body["constitution_hash"],
            training_version=int(body["training_version"]),
            redactions=tuple((int(a), int(b)) for a, b in body["redactions"]),
            decision_event_id=body.get("decision_event_id"),
        )


@dataclass(frozen=True, slots=True)
class StepResult:
    """``decision`` is None while pending: it then appears at ``location`` (the conversation read model)."""

    event_id: str
    conversation_id: str
    idempotency_key: str
    consistency_token: str | None
    decision: StepDecision | None
    location: str

    @property
    def pending(self) -> bool:
        return self.decision is None


class Decisions:
    """The step helper (module doc). Use as ``async with``."""

    def __init__(
        self, base_url: str, token: TokenSource, *, http_client: httpx.AsyncClient | None = None
    ) -> None:
        self.http = EdgeHttp(base_url, token, client=http_client)

    async def __aenter__(self) -> Decisions:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.http.aclose()

    async def step(
        self,
        conversation_id: str,
        content: str,
        *,
        model: str | None = None,
        wait_s: float | None = None,
        idempotency_key: str | None = None,
    ) -> StepResult:
        """Publish the turn (once per key) and wait up to ``wait_s`` (edge default 2 s) for its decision."""
        key = idempotency_key if idempotency_key is not None else str(uuid.uuid4())
        body: dict[str, Any] = {"conversation_id": conversation_id, "content": content}
        if model is not None:
            body["model"] = model
        params = None if wait_s is None else {"wait": f"{wait_s:g}"}
        resp = await self.http.request(
            "POST",
            "/v1/conversation/step",
            "the step",
            json=body,
            headers={"Idempotency-Key": key},
            params=params,
        )
        answer = resp.json()
        decided = resp.status_code == 200
        return StepResult(
            event_id=answer["event_id"],
            conversation_id=answer["conversation_id"],
            idempotency_key=key,
            consistency_token=answer.get("consistency_token"),
            decision=StepDecision.from_answer(answer) if decided else None,
            location=answer.get("location") or f"/v1/conversations/{quote(conversation_id, safe='')}",
        )
