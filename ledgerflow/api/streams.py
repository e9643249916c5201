"""SSE endpoints: a conversation's stream and a whole tenant's, resumable by cursor.

One stream runs in these steps:
0. Kafka must answer (``Hub.kafka_status``, bounded) and the hub's topics exist
   (``Hub.require_topics``): otherwise 503 with Retry-After.
1. Parse ``Last-Event-ID`` (``cursors.resume_from``). A malformed cursor, one of
   another stream, or one beyond the log's end restarts live; a cursor older than the
   log's retention restarts at the oldest record kept. Each sends ``event: reset``
   saying so, with the cursor the stream restarts from. Never a silent skip. Every
   stream then sends a checkpoint (an id-only block) with its start cursor, so a client
   that disconnects before its first data frame resumes from there rather than from "now".
2. Register with the hub before the response starts (so no record slips past), and tie
   the registration to the response: whatever ends it (the stream, a disconnect, a
   failure), the hub forgets the subscriber at once.
3. Catch up: the records between the cursor and the hub's read position. A stream that
   has written nothing for ``heartbeat_s`` (waiting for a catch-up slot, scanning others'
   records, or reading from a silent broker) gets ``event: heartbeat``; a catch-up that
   scanned nothing for ``catch_up_stall_s`` (``catchup_watch``) ends the stream with a
   checkpoint of what it scanned, ``retry:`` and ``event: unavailable``. Its Kafka reader
   is closed, its catch-up slot freed and the hub forgets the subscriber BEFORE that last
   write: a client slow to take it holds none of them.
4. Live: frames from the subscriber's mailbox, several to a write when they queue up.
   Idle streams get ``event: heartbeat`` every ``heartbeat_s``; ``event: reauth`` goes
   out ``reauth_before_s`` before the token expires and the stream ends at expiry with
   ``event: expired``; a subscriber that fell behind gets its queued frames and then
   ``event: overflow``; a closing edge ends streams with ``retry:`` and
   ``event: shutdown``; a stream reading a log that was deleted and re-created under the edge
   (``Hub.log_moved``) ends with ``retry:`` and ``event: unavailable``. Control frames carry no
   ``id:``: a client resumes from its last data frame. The hub forgets the subscriber before
   such a last frame is written, too.

The steps are async generators inside one another; each outer one closes the inner one it
iterates (``contextlib.aclosing``), so a client that disconnects mid-write closes the reader
and frees the slot when the response ends, not whenever the garbage collector finalizes a
suspended generator.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from ledgerflow.api import catchup_watch, cursors, sse
from ledgerflow.api.authentication import require_query_tenant, requires_role
from ledgerflow.api.constitution import header_of
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.hub import CatchUpBatch, Frame, Subscriber
from ledgerflow.api.spec import (
    AUTHED,
    CONSTITUTION_HEADERS,
    STR,
    TENANT_PARAM,
    Handler,
    operation,
    problems,
    query,
)
from ledgerflow.contracts.ids import MAX_ID_LENGTH, check_id
from ledgerflow.errors import InfrastructureError, ValidationError
from ledgerflow.metrics import SSE_DROPPED, SSE_FRAMES, SSE_SUBSCRIBERS
from ledgerflow.timefmt import rfc3339_seconds

RETRY_MS = 2000
MAX_FRAMES_PER_WRITE = 256
MAX_BYTES_PER_WRITE = 256 * 1024
"""A live write joins queued frames up to 256 of them and 256 KiB of event data (at least one frame).
The joined write is the stream's own copy: with frames counted alone, 256 turns of 64 KiB content
(about 130 KB of JSON each, more with escapes) made a 33 MB write per subscriber, and twenty tenant
streams whose clients stopped reading took the edge from 70 MB to 700 MB when they let go."""


STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class EventStreamResponse(StreamingResponse):
    """A ``text/event-stream`` response that closes its body and runs ``on_close`` however it ends."""

    media_type = "text/event-stream"

    def __init__(
        self,
        content: AsyncIterator[bytes],
        on_close: Callable[[], None],
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(content, headers={**STREAM_HEADERS, **(headers or {})})
        self._on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                await aclose()


def head_response(headers: dict[str, str]) -> Response:
    """The answer to ``HEAD`` on a stream: its status and headers, and the end of the answer.

    The server writes no body for HEAD, so a stream opened for one would never end (its client's
    next request on the connection never answered) nor, once the client pipelined a request (the
    server then stops reading), notice the client leave: it held a stream slot of its tenant and a
    hub subscription until its token expired. No ``Content-Length``: a GET's stream has none."""
    response = Response(media_type=EventStreamResponse.media_type, headers={**STREAM_HEADERS, **headers})
    del response.headers["content-length"]
    return response


def _event_stream(
    operation_id: str, summary: str, description: str, params: list[dict[str, Any]]
) -> Callable[[Handler], Handler]:
    return operation(
        operation_id,
        summary=summary,
        description=description,
        tags=["streams"],
        parameters=[
            *params,
            TENANT_PARAM,
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": STR,
                "description": "The `id` of the last data frame received: the stream resumes right after it. "
                "An unknown or expired cursor gets `event: reset` (see docs/sse.md).",
            },
        ],
        responses={
            "200": {
                "description": "A Server-Sent Events stream (docs/sse.md): data frames carry `id:` "
                "cursors; "
                "control frames (heartbeat, reset, overflow, reauth, expired, shutdown, "
                "unavailable) carry none. Each decision frame names the constitution that governed it "
                "(`payload.constitution_hash`, `rule_pack_version`, `signer_kid`).",
                "content": {"text/event-stream": {"schema": STR}},
                "headers": CONSTITUTION_HEADERS,
            },
            **problems(*AUTHED, 422),
        },
    )


@_event_stream(
    "streamConversation",
    "Follow one conversation (role subscriber)",
    "Its events and their policy decisions, resumable.",
    [
        query(
            "conversation_id",
            {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
            "The conversation to follow",
            required=True,
        )
    ],
)
async def conversation_stream(request: Request) -> Response:
    principal = requires_role(request, "subscriber")
    require_query_tenant(request, principal)
    asked = request.query_params.getlist("conversation_id")
    if len(set(asked)) > 1:  # not judged by whichever one the framework keeps (a proxy may take another)
        times = len(asked)
        raise ValidationError(f"conversation_id: given {times} times with different values; send it once")
    conversation_id = asked[0].strip() if asked else ""
    if not conversation_id:
        raise ValidationError("query parameter conversation_id is required")
    check_id("conversation_id", conversation_id)
    return await _open(request, principal.tenant, conversation_id, principal.expires_at)


@_event_stream(
    "streamTenant",
    "Follow the whole tenant (role subscriber)",
    "Every conversation event and decision of the token's "
    "tenant, resumable; order is kept per conversation (per Kafka partition).",
    [],
)
async def tenant_stream(request: Request) -> Response:
    principal = requires_role(request, "subscriber")
    require_query_tenant(request, principal)
    return await _open(request, principal.tenant, None, principal.expires_at)


async def _open(request: Request, tenant: str, conversation_id: str | None, expires_at: float) -> Response:
    ctx: EdgeContext = request.app.state.ctx
    if ctx.closing.is_set():
        raise InfrastructureError("the edge is shutting down")  # 503 + Retry-After: another edge answers
    hub = ctx.hub
    # Step 0.
    hub.require_topics()  # 503 naming the topics deleted under the edge (until they exist again)
    kafka = await hub.kafka_status()
    if kafka != "ok":
        raise InfrastructureError(f"kafka: {kafka}")
    keys = hub.stream_keys(tenant, conversation_id)
    # Step 1.
    stream = cursors.stream_tag(ctx.settings.topic_prefix, tenant, conversation_id)
    resume = cursors.resume_from(request.headers.get("last-event-id", ""), keys, stream)
    ahead = cursors.ahead_of(resume, hub.live_positions(keys))
    if ahead:
        resume = cursors.check_log_end(resume, await hub.log_ends(ahead))
    if resume.seen is not None:
        resume = cursors.clamp_to_retention(resume, await hub.log_starts(keys))
    # The pack in force when the stream opened (each decision frame names its own in its payload).
    constitution = header_of(ctx.reference.pack_for(tenant))
    if request.method == "HEAD":
        return head_response(constitution)  # the checks above, no stream (``head_response``)
    # Step 2.
    ctx.sse_slots.acquire(tenant)  # 429 when the tenant already has its limit of open streams
    sub, gaps = hub.subscribe(tenant, conversation_id, resume.seen)
    SSE_SUBSCRIBERS.inc()
    closed = False

    def close() -> None:
        nonlocal closed
        if not closed:
            closed = True
            hub.unsubscribe(sub)
            ctx.sse_slots.release(tenant)
            SSE_SUBSCRIBERS.dec()

    position = dict(resume.seen) if resume.seen is not None else hub.live_positions(keys)
    frames = _frames(ctx, sub, gaps, position, stream, resume, expires_at, lambda: hub.unsubscribe(sub))
    return EventStreamResponse(frames, close, constitution)


async def _frames(
    ctx: EdgeContext,
    sub: Subscriber,
    gaps: dict[cursors.TopicPartitionKey, tuple[int, int]],
    position: cursors.Positions,
    stream: str,
    resume: cursors.Resume,
    expires_at: float,
    forget: Callable[[], None],
) -> AsyncGenerator[bytes, None]:
    """The stream's frames. ``forget`` (idempotent) drops the hub's subscription: called before
    a last frame is written, so a slow client holds nothing of the hub while it takes it."""
    yield sse.retry_hint(RETRY_MS)
    start = cursors.encode(position, stream)
    if resume.reset is not None:
        SSE_FRAMES.labels("reset").inc()
        yield sse.control_frame("reset", {"reason": resume.reset, "restart": resume.restart, "cursor": start})
    yield sse.checkpoint(start)  # a client with no data frame yet resumes from here, not from "now"
    # Step 3.
    catch_up = _CatchUp(ctx, sub, gaps, position, stream, expires_at, sent=start)
    async with contextlib.aclosing(catch_up.frames()) as chunks:
        async for chunk in chunks:
            yield chunk
    # Closed here: the catch-up's reader is stopped and its slot free.
    if catch_up.last is not None:
        forget()
        yield catch_up.last
        return
    if (scanned := cursors.encode(position, stream)) != catch_up.sent:
        yield sse.checkpoint(scanned)  # scanned past others' records: skip them next time
    # Step 4.
    async with contextlib.aclosing(_live(ctx, sub, position, stream, expires_at, forget)) as chunks:
        async for chunk in chunks:
            yield chunk


@dataclass(eq=False)
class _CatchUp:
    """Step 3 of one stream: its frames, heartbeats while the next batch is awaited, and the end
    of the stream when the catch-up stalls, fails, or the token or the edge ends it: then
    ``frames`` stops WITHOUT writing that end, and ``last`` holds it, to be written once the
    reader is closed and the slot free."""

    ctx: EdgeContext
    sub: Subscriber
    gaps: dict[cursors.TopicPartitionKey, tuple[int, int]]
    position: cursors.Positions
    stream: str  # the stream's tag (``cursors.stream_tag``), the head of every cursor
    expires_at: float
    sent: str  # the last id the client was sent: where it resumes from
    last: bytes | None = None  # the stream's last frames, when the catch-up ends it

    async def frames(self) -> AsyncGenerator[bytes, None]:
        if not self.gaps:
            return  # nothing to catch up on (a stream starting live): no reader, no tasks
        ctx = self.ctx
        batches = ctx.hub.catch_up(self.sub, self.gaps)
        closing = asyncio.ensure_future(ctx.closing.wait())
        pending: asyncio.Task[CatchUpBatch | None] | None = None
        clock = catchup_watch.started(time.monotonic())
        try:
            while True:
                if (last := _final_frame(ctx, self.expires_at, self.sub)) is not None:
                    self.last = last
                    return
                step = catchup_watch.next_step(
                    clock,
                    time.monotonic(),
                    ctx.heartbeat_s,
                    ctx.catch_up_stall_s,
                    answered=pending is not None and pending.done(),
                )
                if isinstance(step, catchup_watch.GiveUp):
                    self.last = self._last_frames("stalled", step.reason)
                    return
                if isinstance(step, catchup_watch.Heartbeat):
                    SSE_FRAMES.labels("heartbeat").inc()
                    began = time.monotonic()
                    yield sse.control_frame("heartbeat")  # blocks while the client takes nothing
                    clock = catchup_watch.after_heartbeat(clock, began, time.monotonic())
                    continue
                # The read goes on across waits: a heartbeat does not cancel it (nor lose its batch).
                pending = pending or asyncio.create_task(_next_batch(batches))
                timeout = max(min(step.seconds, self.expires_at - time.time()), 0.0)
                await asyncio.wait({pending, closing}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not pending.done():
                    continue
                batch, pending = pending.result(), None
                if batch is None:
                    return
                before = self.position[batch.key]
                if batch.frames:
                    chunk, self.sent = _data_frames(self.position, batch.frames, self.stream)
                    yield chunk
                self.position[batch.key] = max(self.position[batch.key], batch.scanned_to)
                clock = catchup_watch.after_batch(
                    clock,
                    time.monotonic(),
                    before=before,
                    scanned_to=batch.scanned_to,
                    wrote=bool(batch.frames),
                )
        except InfrastructureError as exc:
            self.last = self._last_frames("unavailable", f"{exc}: reconnect")
        finally:
            closing.cancel()
            await _close_catch_up(pending, batches)

    def _last_frames(self, reason: str, detail: str) -> bytes:
        """A checkpoint of what was scanned (records of others are not read again), then
        ``unavailable`` with ``retry:``: the client reconnects with its last id after the delay."""
        SSE_DROPPED.labels(reason).inc()
        scanned = cursors.encode(self.position, self.stream)
        head = sse.checkpoint(scanned) if scanned != self.sent else b""
        return head + sse.control_frame("unavailable", {"detail": detail}, retry_ms=RETRY_MS)


async def _next_batch(batches: AsyncGenerator[CatchUpBatch, None]) -> CatchUpBatch | None:
    return await anext(batches, None)


async def _close_catch_up(
    pending: asyncio.Task[CatchUpBatch | None] | None, batches: AsyncGenerator[CatchUpBatch, None]
) -> None:
    """Stop the read in flight (its consumer stops, its slot is freed), then close the iterator."""
    if pending is not None:
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
    await batches.aclose()


async def _live(
    ctx: EdgeContext,
    sub: Subscriber,
    position: cursors.Positions,
    stream: str,
    expires_at: float,
    forget: Callable[[], None],
) -> AsyncGenerator[bytes, None]:
    reauth_at = expires_at - ctx.reauth_before_s
    reauth_sent = False
    last_write = time.monotonic()
    while True:
        if (last := _final_frame(ctx, expires_at, sub)) is not None:
            forget()
            yield last
            return
        now = time.time()
        if not reauth_sent and now >= reauth_at:
            reauth_sent = True
            SSE_FRAMES.labels("reauth").inc()
            yield sse.control_frame(
                "reauth",
                {
                    "expires_at": rfc3339_seconds(expires_at),
                    "detail": "token expires soon: reconnect with a new token and your last event id",
                },
            )
            continue
        frames = sub.queue.take(MAX_FRAMES_PER_WRITE, MAX_BYTES_PER_WRITE)
        if frames:
            ctx.hub.frames_sent += len(frames)
            yield _data_frames(position, frames, stream)[0]
            last_write = time.monotonic()
            continue
        if sub.overflowed:
            SSE_DROPPED.labels("overflow").inc()
            forget()
            yield sse.control_frame("overflow", {"detail": "too slow: reconnect with your last event id"})
            return
        heartbeat_due = last_write + ctx.heartbeat_s - time.monotonic()
        auth_due = (expires_at if reauth_sent else reauth_at) - now
        await sub.queue.wait(min(heartbeat_due, auth_due))
        if sub.queue.qsize() == 0 and time.monotonic() >= last_write + ctx.heartbeat_s:
            SSE_FRAMES.labels("heartbeat").inc()
            yield sse.control_frame("heartbeat")
            last_write = time.monotonic()


def _final_frame(ctx: EdgeContext, expires_at: float, sub: Subscriber) -> bytes | None:
    """The frame that ends the stream now (a log it reads re-created, token expired, edge closing)."""
    if sub.log_moved is not None:  # its positions name records of a log that is gone (hub.log_moved)
        SSE_DROPPED.labels("log_moved").inc()
        return sse.control_frame("unavailable", {"detail": sub.log_moved}, retry_ms=RETRY_MS)
    if time.time() >= expires_at:
        SSE_DROPPED.labels("expired").inc()
        return sse.control_frame("expired", {"detail": "token expired: reconnect with a new token"})
    if ctx.closing.is_set():
        SSE_DROPPED.labels("shutdown").inc()
        return sse.control_frame("shutdown", {"detail": "edge shutting down: reconnect"}, retry_ms=RETRY_MS)
    return None


def _data_frames(position: cursors.Positions, frames: list[Frame], stream: str) -> tuple[bytes, str]:
    """Frames as one write, and the last one's cursor (after ``stream``'s tag); ``position``
    advances with each."""
    out, cursor = [], ""
    for frame in frames:
        if frame.mark is not None:
            position.update(cursors.served(position, frame.mark))
        position[frame.key] = max(position[frame.key], frame.offset)
        cursor = cursors.encode(position, stream)
        out.append(sse.data_frame(cursor, frame.event_type, frame.data))
    SSE_FRAMES.labels("data").inc(len(out))
    return b"".join(out), cursor
