"""SSE endpoints: a conversation's stream and a whole tenant's, resumable by cursor.

One stream runs in these steps:
1. Parse ``Last-Event-ID``. A malformed cursor, or one of another stream, gets
   ``event: reset`` and restarts live; a cursor older than the log's retention gets
   ``event: reset`` and restarts at the oldest record kept. Never a silent skip.
2. Register with the hub, then send the records between the cursor and the hub's read
   position (catch-up), then live frames from the subscriber's queue.
3. Idle streams get ``event: heartbeat``; ``event: reauth`` goes out ``reauth_before_s``
   before the token expires and the stream ends at expiry (``event: expired``); a
   subscriber that falls behind gets ``event: overflow`` and is closed. Each of these
   control frames has no ``id:``, so the client resumes from its last data frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import StreamingResponse

from ledgerflow.api import cursors, sse
from ledgerflow.api.authentication import requires_role
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.hub import Subscriber
from ledgerflow.errors import ValidationError
from ledgerflow.metrics import SSE_DROPPED, SSE_FRAMES, SSE_SUBSCRIBERS

RETRY_MS = 2000


async def conversation_stream(request: Request) -> StreamingResponse:
    principal = requires_role(request, "subscriber")
    principal.require_tenant(request.query_params.get("tenant", principal.tenant))
    conversation_id = request.query_params.get("conversation_id", "").strip()
    if not conversation_id:
        raise ValidationError("query parameter conversation_id is required")
    return await _open(request, principal.tenant, conversation_id, principal.expires_at)


async def tenant_stream(request: Request) -> StreamingResponse:
    principal = requires_role(request, "subscriber")
    principal.require_tenant(request.query_params.get("tenant", principal.tenant))
    return await _open(request, principal.tenant, None, principal.expires_at)


async def _open(request: Request, tenant: str, conversation_id: str | None, expires_at: float) -> StreamingResponse:
    ctx: EdgeContext = request.app.state.ctx
    hub = ctx.hub
    keys = hub.stream_keys(tenant, conversation_id)
    # Step 1.
    last_id = request.headers.get("last-event-id", "").strip()
    seen: dict[cursors.TopicPartitionKey, int] | None = None
    reset: dict[str, object] | None = None
    if last_id:
        try:
            parsed = cursors.decode(last_id)
            if set(parsed) != set(keys):
                raise ValidationError("the cursor belongs to another stream")
            seen = parsed
        except ValidationError as exc:
            reset = {"reason": f"unknown cursor: {exc}", "restart": "live"}
        if seen is not None:
            starts = await hub.log_starts(keys)
            expired = {k for k in keys if seen[k] + 1 < starts[k]}
            if expired:
                seen = {k: (starts[k] - 1 if k in expired else seen[k]) for k in keys}
                reset = {"reason": "cursor older than the log's retention", "restart": "earliest"}
    # Step 2.
    sub, gaps = hub.subscribe(tenant, conversation_id, seen)
    position = dict(seen) if seen is not None else hub.live_positions(keys)
    if seen is None and last_id and reset is not None:
        reset["cursor"] = cursors.encode(position)
    body = _frames(ctx, sub, gaps, position, reset, expires_at)
    return StreamingResponse(
        body, media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _frames(
    ctx: EdgeContext,
    sub: Subscriber,
    gaps: dict[cursors.TopicPartitionKey, tuple[int, int]],
    position: dict[cursors.TopicPartitionKey, int],
    reset: dict[str, object] | None,
    expires_at: float,
) -> AsyncIterator[bytes]:
    SSE_SUBSCRIBERS.inc()
    try:
        yield sse.retry_hint(RETRY_MS)
        if reset is not None:
            SSE_FRAMES.labels("reset").inc()
            yield sse.control_frame("reset", reset)
        async for frame in ctx.hub.catch_up(sub, gaps):
            position[frame.key] = frame.offset
            SSE_FRAMES.labels("data").inc()
            yield sse.data_frame(cursors.encode(position), frame.event_type, frame.data)
        # Step 3.
        reauth_sent = False
        while True:
            now = time.time()
            if sub.overflowed:
                SSE_DROPPED.labels("overflow").inc()
                yield sse.control_frame("overflow", {"detail": "too slow: resume from your last event id"})
                return
            if now >= expires_at:
                SSE_DROPPED.labels("expired").inc()
                yield sse.control_frame("expired", {"detail": "token expired: reconnect with a new token"})
                return
            if ctx.closing.is_set():
                yield sse.retry_hint(RETRY_MS)
                yield sse.control_frame("shutdown", {"detail": "edge restarting: reconnect"})
                return
            reauth_at = expires_at - ctx.reauth_before_s
            if not reauth_sent and now >= reauth_at:
                reauth_sent = True
                yield sse.control_frame("reauth", {"expires_at": expires_at})
                continue
            next_auth_event = expires_at if reauth_sent else reauth_at
            try:
                frame = await asyncio.wait_for(
                    sub.queue.get(), timeout=max(min(ctx.heartbeat_s, next_auth_event - now), 0.01)
                )
            except TimeoutError:
                if time.time() < next_auth_event:  # idle: keep the connection alive
                    SSE_FRAMES.labels("heartbeat").inc()
                    yield sse.control_frame("heartbeat")
                continue
            if sub.overflowed:
                continue  # frames after an overflow are dropped; the client resumes from its cursor
            position[frame.key] = frame.offset
            ctx.hub.frames_sent += 1
            SSE_FRAMES.labels("data").inc()
            yield sse.data_frame(cursors.encode(position), frame.event_type, frame.data)
    finally:
        ctx.hub.unsubscribe(sub)
        SSE_SUBSCRIBERS.dec()
