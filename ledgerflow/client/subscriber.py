"""Follow a conversation or the tenant's stream: typed events, resume, reauth.

    async with Subscriber("http://127.0.0.1:8700", token=get_token, conversation_id="c1") as sub:
        async for item in sub:
            print(item.cursor, item.event.type, item.event.payload)

Each item is a ``Received``: the event decoded into the contracts' dataclasses and the cursor
after it (``sub.last_event_id``; save it and pass ``last_event_id=`` to resume later with no
gap and no duplicate). The subscriber reconnects by itself with ``Last-Event-ID`` when the
connection drops or the edge ends the stream (``overflow``, ``shutdown``, ``unavailable``,
backing off after 503/429), and asks the token callback again on ``reauth``, ``expired`` and
401. It raises only what reconnecting cannot fix: a 403/422 (wrong role, tenant or id), or
a token callback that keeps giving refused tokens. SSE parsing is
``ledgerflow.sse_client`` (httpx-sse's WHATWG parser).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import httpx

from ledgerflow.client.edge_http import TokenSource, error_for, resolve_token, retry_delay
from ledgerflow.client.records import Notice, Received
from ledgerflow.contracts.events import Event
from ledgerflow.errors import AuthError, InfrastructureError
from ledgerflow.retry import RETRY_STATUSES
from ledgerflow.sse_client import SseEvent, follow

log = logging.getLogger(__name__)

RECONNECT_KINDS = frozenset({"expired", "overflow", "shutdown", "unavailable"})
"""Control frames after which the edge ends the stream: reconnect from the last cursor."""
MIN_CONNECTION_S = 1.0
"""A ``reauth`` on a younger connection does not make the subscriber switch tokens (``_switch_token``)."""
MAX_AUTH_FAILURES = 2
"""401s in a row (each after asking the token callback again), or ``expired`` frames after which
the callback gave the token that just expired again, before giving up. The edge accepts a token
for its leeway (30 s) past ``exp``, but a stream on it ends at once with ``expired``: reconnecting
with it looped, dozens of connections a second for those 30 s."""


def stream_path(conversation_id: str | None) -> str:
    if conversation_id is None:
        return "/v1/streams/tenant"
    return "/v1/conversation/stream?" + urlencode({"conversation_id": conversation_id})


def decode_frame(frame: SseEvent) -> Event:
    """A data frame's event (JSON rendered by ledgerflow, chain fields included).

    A frame that is not one (not JSON, not an event) raises InfrastructureError in one line
    naming its id; the subscriber's ``last_event_id`` stays on the frame before it."""
    try:
        return Event.from_json(
            json.loads(frame.data), now_micros=time.time_ns() // 1000, accept_chain_fields=True
        )
    except Exception as exc:  # json's ValueError, the envelope's ValidationError, a non-object's TypeError …
        reason = " ".join(str(exc).split())[:200]
        raise InfrastructureError(
            f"the stream sent a data frame that is not a ledgerflow event (id {frame.id!s:.80}, "
            f"event {frame.event[:40]!r}): {type(exc).__name__}: {reason}"
        ) from None


def control_data(frame: SseEvent) -> dict[str, Any]:
    """A control frame's JSON object; anything else is kept as ``{"data": text}`` (the frame's
    kind is what matters: a garbled detail does not end the stream)."""
    try:
        data = json.loads(frame.data) if frame.data else {}
    except ValueError:
        return {"data": frame.data}
    return data if isinstance(data, dict) else {"data": data}


class Subscriber:
    """One followed stream (module doc). ``on_notice`` sees every control frame but heartbeats."""

    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        conversation_id: str | None = None,
        last_event_id: str | None = None,
        on_notice: Callable[[Notice], None] | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = base_url.rstrip("/") + stream_path(conversation_id)
        self.token = token
        self.last_event_id = last_event_id
        self.on_notice = on_notice
        self.connections = 0  # streams opened (a reconnect adds one)
        self._own = http_client is None
        self._client = http_client or httpx.AsyncClient()
        self._retry_s = 2.0
        self._connected_at = 0.0
        self.open = asyncio.Event()
        """Set while a stream is open (from its opening checkpoint on): what is published then arrives."""

    async def __aenter__(self) -> Subscriber:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own:
            await self._client.aclose()

    def __aiter__(self) -> AsyncIterator[Received]:
        return self.events()

    async def events(self) -> AsyncGenerator[Received, None]:
        """Every event of the stream from the resume point on, across reconnects, until cancelled."""
        failures = 0  # reconnects in a row without a frame (backoff)
        auth_failures = 0  # refused or expired tokens in a row
        fresh: str | None = None  # a token already asked of the callback, for the next connection
        while True:
            token = fresh if fresh is not None else await resolve_token(self.token)
            fresh = None
            delay = 0.0
            told = False  # the edge ended the stream with a frame saying why (or a new token ends it)
            try:
                async with contextlib.aclosing(self._frames(token)) as frames:
                    async for frame in frames:
                        failures = 0
                        if not (isinstance(frame, Notice) and frame.kind == "expired"):
                            auth_failures = 0
                        if isinstance(frame, Received):
                            yield frame
                            continue
                        self._notify(frame)
                        if frame.kind == "expired":
                            told = True
                            fresh = await resolve_token(self.token)
                            if fresh == token:  # reconnecting with it would only be `expired` again
                                auth_failures += 1
                                if isinstance(self.token, str) or auth_failures > MAX_AUTH_FAILURES:
                                    raise AuthError(
                                        "the stream's token expired and no other came "
                                        f"({auth_failures} in a row): pass a callback that returns a fresh "
                                        "token, and last_event_id to resume"
                                    )
                                delay = retry_delay(None, auth_failures)
                            break
                        if frame.kind in RECONNECT_KINDS:
                            delay = self._retry_s if frame.kind in ("shutdown", "unavailable") else 0.0
                            told = True
                            break
                        if frame.kind == "reauth" and await self._switch_token(token):
                            told = True
                            break
                if not told:  # ended with no word (a proxy or server cut it short): back off as after a drop
                    delay = retry_delay(None, failures)
                    failures += 1
            except httpx.HTTPStatusError as exc:
                resp = exc.response
                if resp.status_code == 401:
                    auth_failures += 1
                    if auth_failures > MAX_AUTH_FAILURES or isinstance(self.token, str):
                        raise AuthError(
                            f"the edge refused the stream's token ({auth_failures} in a row; "
                            f"{error_for(resp, 'following the stream')}): pass a valid token, or a "
                            "callback that returns a fresh one"
                        ) from None
                    continue
                if resp.status_code not in RETRY_STATUSES:
                    raise error_for(resp, "following the stream") from None
                delay = retry_delay(resp, failures)
                failures += 1
            except httpx.TransportError:
                delay = retry_delay(None, failures)
                failures += 1
            await asyncio.sleep(delay)

    async def _frames(self, token: str) -> AsyncGenerator[Received | Notice, None]:
        """One connection: data frames as ``Received`` (a checkpoint only moves the cursor),
        control frames as ``Notice``."""
        self.connections += 1
        self._connected_at = time.monotonic()
        try:
            async for frame in follow(self._client, self.url, token, self.last_event_id, checkpoints=True):
                item = self._handle(frame)
                if item is not None:
                    yield item
        finally:
            self.open.clear()

    def _handle(self, frame: SseEvent) -> Received | Notice | None:
        if frame.retry is not None:
            self._retry_s = frame.retry / 1000
        if frame.id is not None:
            received = Received(frame.id, decode_frame(frame)) if frame.data else None
            self.last_event_id = frame.id
            if received is None:
                self.open.set()  # a checkpoint: the stream is registered at the edge
            return received
        if frame.event == "heartbeat":
            return None
        return Notice(frame.event, control_data(frame))

    async def _switch_token(self, token: str) -> bool:
        """On ``reauth``: reconnect now if the callback has another token, else keep the stream
        until ``expired``. A reauth right after connecting means tokens live shorter than the
        edge's reauth window: switching would only reconnect again at once, so it waits too."""
        if time.monotonic() - self._connected_at < MIN_CONNECTION_S:
            return False
        return await resolve_token(self.token) != token

    def _notify(self, notice: Notice) -> None:
        if self.on_notice is not None:
            self.on_notice(notice)
        elif notice.kind == "reset":  # nobody listens, and the stream did not resume where asked
            log.warning("%s", reset_warning(self.url, notice.data))


def reset_warning(url: str, data: dict[str, Any]) -> str:
    """Pure: the line logged for a ``reset`` no ``on_notice`` handles: the stream did not resume
    where it was asked to, and why (the edge's ``reason``), and where it goes on from."""
    reason = " ".join(str(data.get("reason") or "no reason given").split())[:300]
    restart = data.get("restart") or "?"
    return (
        f"{url}: the edge could not resume at the cursor given ({reason}); following on from the "
        f"{restart} position, so events in between were not delivered (pass on_notice to handle resets)"
    )
