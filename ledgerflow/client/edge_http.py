"""Talking to the edge: tokens from a callback, problem answers as ledgerflow errors, bounded retries.

A request is retried only when repeating it cannot double its effect (the caller's job: the
producer always sends an ``event_id``, the decisions helper an ``Idempotency-Key``): after a
503/429 (waiting ``Retry-After``), a 409 with ``Retry-After`` (the edge is still publishing the
first request with this event id or key: a retry of ours or of the caller's raced it), a lost
connection, or a 401 (once, with a fresh token).
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from ledgerflow.digits import ascii_digits
from ledgerflow.errors import AuthError, InfrastructureError, LedgerflowError, ValidationError
from ledgerflow.retry import RETRY_STATUSES

TokenSource = str | Callable[[], str] | Callable[[], Awaitable[str]]
"""A fixed token, or a callback asked again whenever the edge refuses one or a stream asks to reauth."""

DEFAULT_ATTEMPTS = 5
MAX_DELAY_S = 5.0


async def resolve_token(source: TokenSource) -> str:
    if isinstance(source, str):
        return source
    got = source()
    token = await got if inspect.isawaitable(got) else got
    if not isinstance(token, str) or not token:
        raise AuthError("the token callback returned no token")
    return token


def problem_detail(resp: httpx.Response) -> str:
    """The ``detail`` of an RFC 9457 answer, else the start of the body."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200] or resp.reason_phrase
    if isinstance(body, dict) and isinstance(body.get("detail"), str):
        return str(body["detail"])
    return resp.text[:200]


def retryable(resp: httpx.Response) -> bool:
    """Whether the edge means "later": 429, 502, 503, 504, or a 409 with ``Retry-After`` (the first
    request with this event id or ``Idempotency-Key`` is still being processed, api/idempotency.py)."""
    return resp.status_code in RETRY_STATUSES or (resp.status_code == 409 and "retry-after" in resp.headers)


def error_for(resp: httpx.Response, what: str) -> LedgerflowError:
    """The ledgerflow error for a refused request (never echoes the token)."""
    detail = f"{what}: HTTP {resp.status_code}: {problem_detail(resp)}"
    if resp.status_code in (401, 403):
        return AuthError(detail, status=resp.status_code)
    if resp.status_code >= 500 or retryable(resp):
        return InfrastructureError(detail)
    return ValidationError(detail)


def retry_delay(resp: httpx.Response | None, attempt: int) -> float:
    """``Retry-After`` when the edge gave one, else exponential backoff (0.2 s, 0.4 s … capped)."""
    if resp is not None:
        raw = resp.headers.get("retry-after", "")
        if ascii_digits(raw):
            return min(float(raw), MAX_DELAY_S)
    return float(min(0.2 * 2**attempt, MAX_DELAY_S))


class EdgeHttp:
    """One ``httpx.AsyncClient`` on an edge base URL, with the token callback."""

    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        client: httpx.AsyncClient | None = None,
        attempts: int = DEFAULT_ATTEMPTS,
        timeout_s: float = 35.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.attempts = attempts
        self._own = client is None
        self.client = client or httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0))

    async def aclose(self) -> None:
        if self._own:
            await self.client.aclose()

    async def request(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> httpx.Response:
        """The answer with a 2xx status; raises the ledgerflow error otherwise (see module doc)."""
        refreshed = False
        attempt = 0
        while True:
            auth = {"Authorization": f"Bearer {await resolve_token(self.token)}"}
            try:
                resp = await self.client.request(
                    method, self.base_url + path, json=json, headers=auth | (headers or {}), params=params
                )
            except httpx.TransportError as exc:
                if attempt + 1 >= self.attempts:
                    raise InfrastructureError(
                        f"{what}: the edge at {self.base_url} did not answer: {exc}"
                    ) from exc
                await asyncio.sleep(retry_delay(None, attempt))
                attempt += 1
                continue
            if resp.is_success:
                return resp
            if resp.status_code == 401 and not refreshed and not isinstance(self.token, str):
                refreshed = True  # the token may have expired between calls: ask the callback once more
                continue
            if retryable(resp) and attempt + 1 < self.attempts:
                await asyncio.sleep(retry_delay(resp, attempt))
                attempt += 1
                continue
            raise error_for(resp, what)


def token_tenant(token: str) -> str:
    """The ``tenant`` claim of a JWT, read without verifying it (the edge verifies; this only
    fills the envelope's tenant, which the edge then checks against the verified one)."""
    parts = token.split(".")
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError) as exc:
        raise AuthError("the token is not a JWT (three base64url parts)") from exc
    tenant = claims.get("tenant") if isinstance(claims, dict) else None
    if not isinstance(tenant, str) or not tenant:
        raise AuthError("the token has no tenant claim; pass tenant= explicitly")
    return tenant
