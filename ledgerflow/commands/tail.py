"""``ledgerflow tail``: follow a conversation (or the tenant's whole stream) through the edge's SSE.

Resume: the stream's cursor is the last id received, a data frame's or a checkpoint's (the
id-only block every stream opens with, and the one after a ``reset``): a tail that has shown
nothing yet still resumes from where its stream began, not from "now". When a stream ends (edge
restart, ``shutdown``, ``overflow``, a dropped connection) the tail reconnects with that
cursor as ``Last-Event-ID`` after the server's retry delay: no gap, no duplicate. A reconnect
answered 429 or 5xx (the tenant's streams are all taken, the edge is closing, Kafka does not
answer) is tried again after the answer's ``Retry-After``; only a first connection fails at once. On
``reauth``/``expired`` it mints a fresh token (when it minted the first one from the local
dev key) and reconnects the same way. ``--last-event-id`` resumes an earlier tail; the cursor
to do so is printed on stderr when the tail stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from ledgerflow.digits import ascii_digits
from ledgerflow.errors import AuthError, InfrastructureError, ValidationError
from ledgerflow.retry import RETRY_STATUSES
from ledgerflow.sse_client import SseEvent, follow

RECONNECT_S = 2.0  # the edge's own `retry:` (docs/sse.md)
RENEW = frozenset({"reauth", "expired"})
ENDING = frozenset({"overflow", "shutdown", "unavailable"})
CONTENT_PREVIEW = 80
MAX_RETRY_AFTER_S = 60.0


@dataclass
class TailState:
    """What survives a reconnect: the cursor and how many data frames were shown."""

    cursor: str | None = None
    shown: int = 0
    connected: bool = False


def stream_path(conversation: str | None) -> str:
    if conversation is None:
        return "/v1/streams/tenant"
    return f"/v1/conversation/stream?conversation_id={quote(conversation, safe='')}"


def render(frame: SseEvent, *, as_json: bool) -> str | None:
    """The line printed for a frame, or None (checkpoints and heartbeats print nothing)."""
    if not frame.data or frame.event == "heartbeat":
        return None
    if as_json:
        return json.dumps(
            {"id": frame.id, "event": frame.event, "data": _loads(frame.data)}, ensure_ascii=False
        )
    if frame.id is None:  # a control frame
        return f"-- {frame.event}: {_control_detail(_loads(frame.data))}"
    return pretty(frame.event, _loads(frame.data))


def pretty(event_type: str, event: Any) -> str:
    if not isinstance(event, dict):
        return f"{event_type} {event!r}"
    raw = event.get("payload")
    payload: dict[str, Any] = raw if isinstance(raw, dict) else {}
    when = event.get("occurred_at", "")
    return f"{when}  {event_type:<19} {event.get('subject', '')}  {summary(event_type, payload)}".rstrip()


def summary(event_type: str, p: dict[str, Any]) -> str:
    if event_type == "MessageSubmitted":
        content = " ".join(str(p.get("content", "")).split())
        cut = content if len(content) <= CONTENT_PREVIEW else content[: CONTENT_PREVIEW - 1] + "…"
        return f"{p.get('role')} {p.get('turn_id')}: {cut}"
    if event_type == "PolicyDecision":
        rules = ",".join(p.get("matched_rules") or []) or "-"
        return f"{p.get('outcome')} score {p.get('score')} rules {rules} (pack v{p.get('rule_pack_version')})"
    if event_type == "ConversationStarted":
        return f"by {p.get('actor')} on {p.get('model')}"
    if event_type == "ConversationClosed":
        return str(p.get("reason", ""))
    return json.dumps(p, ensure_ascii=False, sort_keys=True)[:200]


def refusal_wait(status: int, retry_after: str, *, connected: bool) -> float | None:
    """How long to wait before reconnecting after a refused stream, or None to give up.

    A refusal the edge means as "later" (429, 502, 503, 504) after the tail has followed the
    stream is waited out (``Retry-After``, else the reconnect delay): the edge restarting or
    briefly full must not end a tail that holds a cursor. The first connection fails at once,
    so a tail pointed at the wrong place says so."""
    if not connected or status not in RETRY_STATUSES:
        return None
    if ascii_digits(retry_after):
        return min(float(retry_after), MAX_RETRY_AFTER_S)
    return RECONNECT_S


def _control_detail(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("detail") or data.get("reason") or json.dumps(data, sort_keys=True))
    return str(data)


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


async def tail(
    base_url: str,
    path: str,
    token: Callable[[], str],
    state: TailState,
    emit: Callable[[str], None],
    note: Callable[[str], None],
    *,
    as_json: bool,
    count: int | None,
    renewable: bool,
    reconnect_s: float = RECONNECT_S,
) -> None:
    """Follow until ``count`` data frames were shown (None: until interrupted)."""
    async with httpx.AsyncClient() as client:
        current = token()
        while count is None or state.shown < count:
            control, opened = None, False
            try:
                stream = follow(client, base_url + path, current, state.cursor, checkpoints=True)
                async with contextlib.aclosing(stream) as frames:
                    async for frame in frames:
                        if not opened:  # the stream's first block (its checkpoint): we are in
                            opened = True
                            verb = "resumed" if state.connected else "following"
                            note(f"tail: {verb} {base_url}{path}")
                        state.connected = True
                        if frame.id is not None:  # a data frame or a checkpoint: the resume point
                            state.cursor = frame.id
                            if not frame.data:
                                continue  # a checkpoint shows nothing
                            state.shown += 1
                        line = render(frame, as_json=as_json)
                        if line is not None:
                            emit(line)
                        if frame.id is None and frame.event in RENEW | ENDING:
                            control = frame.event
                            break
                        if count is not None and state.shown >= count:
                            return
            except httpx.HTTPStatusError as exc:
                resp = exc.response
                wait = refusal_wait(
                    resp.status_code, resp.headers.get("retry-after", ""), connected=state.connected
                )
                if wait is None:
                    raise _refusal(resp, base_url) from None
                note(f"{_refusal(resp, base_url)}; reconnecting in {wait:g} s")
                await asyncio.sleep(wait)
                continue
            except httpx.TransportError as exc:
                if not state.connected:
                    raise InfrastructureError(
                        f"no edge answers at {base_url} ({type(exc).__name__}): start one with "
                        "`ledgerflow serve`, or point --http / LEDGERFLOW_HTTP at it"
                    ) from None
                note(
                    f"connection lost ({type(exc).__name__}); reconnecting from {state.cursor or 'the start'}"
                )
            if control in RENEW:
                if not renewable:
                    raise AuthError(
                        f"the token {'expires' if control == 'reauth' else 'expired'}: "
                        "give a new --token and --last-event-id to resume"
                    )
                current = token()
                continue  # a fresh token resumes at once: no gap, no duplicate
            await asyncio.sleep(reconnect_s)


def _refusal(resp: httpx.Response, base_url: str) -> Exception:
    try:
        detail = str(resp.json().get("detail", ""))
    except ValueError:
        detail = resp.text[:200]
    if resp.status_code in (401, 403):
        return AuthError(f"the edge at {base_url} refused the stream ({resp.status_code}): {detail}")
    if resp.status_code in (400, 404, 422):
        return ValidationError(f"the edge at {base_url} refused the stream ({resp.status_code}): {detail}")
    return InfrastructureError(f"the edge at {base_url} answered {resp.status_code}: {detail}")
