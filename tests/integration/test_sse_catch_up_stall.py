"""A broker paused in the middle of an SSE catch-up, on a PRIVATE Kafka and Redis started by this
module (the shared stack is never paused).

A subscriber resumes a conversation with a cursor from the start of a long log, reads its first
frame, and the broker is SIGSTOPped. Before the fix its catch-up read nothing, sent nothing and
held its catch-up slot until the token expired. Now (docs/sse.md):

- the stream sends heartbeats while the catch-up reads nothing;
- after ``LEDGERFLOW_SSE_CATCH_UP_STALL_S`` without progress it ends with ``retry:`` and
  ``event: unavailable`` (no id), and the slot is free again while the broker is still paused
  (``ledgerflow_sse_catch_ups`` back to 0);
- after SIGCONT a reconnect with the last id it received is admitted (the edge has ONE catch-up
  slot here, so a leaked slot would keep it waiting) and yields the rest of the log: no gap,
  no duplicate.

Hostile cases of the same wait (with a stall bound far longer than the test waits): a client
that leaves a stalled catch-up frees its slot at once, and an edge told to stop ends a stalled
catch-up with ``shutdown`` at once, both while the broker is still paused.

A client that does not take the last frames holds nothing: on an edge run in this process
(its ASGI ``send`` is the test's, so a write blocks for as long as the test says), the
``unavailable`` frame is written after the catch-up's reader is closed, its slot freed and the
hub's subscription dropped; and a client that disconnects while a write blocks mid-catch-up has
its reader closed and slot freed by the time the response ends (not when the garbage collector
gets to a suspended generator). And a client that blocks a heartbeat write for twice the stall
bound, while the read in flight comes back, still gets the whole log: the bound counts time
waiting on Kafka, not time blocked on the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.types import Message, Scope

from ledgerflow.api import cursors
from ledgerflow.api.app import create_app
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.hub import partition_for
from ledgerflow.config import Settings
from ledgerflow.contracts.events import Event
from ledgerflow.metrics import EDGE_REGISTRY
from ledgerflow.sse_client import RawStream, SseEvent, SseHttpError
from tests.integration import edgekit
from tests.integration.test_sse_streams import (
    PARTITIONS,
    Edge,
    Producer,
    _first_frames,
    big_turns,
    running_edge,
)
from tests.support.privatestack import private_settings, private_stack

STALL_S = 3.0
KNOBS = {
    "LEDGERFLOW_SSE_HEARTBEAT_S": "0.5",
    "LEDGERFLOW_SSE_CATCH_UP_STALL_S": str(STALL_S),
    "LEDGERFLOW_SSE_CATCH_UP_SLOTS": "1",
}
PATIENT = KNOBS | {"LEDGERFLOW_SSE_CATCH_UP_STALL_S": "600"}  # only the event under test ends the catch-up
EVENTS = 4000  # ~9 MB on one partition: far more than the edge's consumer and the sockets buffer
GUARD_S = 60.0  # how long the test waits for what it expects before failing (a hang guard, not a bound)


def _say(msg: str) -> None:
    print(f"[private stack] {msg}", flush=True)


async def _catch_ups(edge: Edge) -> float:
    """``ledgerflow_sse_catch_ups``: catch-ups holding a slot on the edge."""
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(f"{edge.base}/metrics")).text
    found = [line.split()[1] for line in text.splitlines() if line.startswith("ledgerflow_sse_catch_ups ")]
    assert found, "the edge exports no ledgerflow_sse_catch_ups"
    return float(found[0])


async def _until_the_end(stream: AsyncIterator[SseEvent], frames: list[SseEvent]) -> None:
    async for frame in stream:
        frames.append(frame)


async def _until_no_catch_up(edge: Edge) -> None:
    began = time.monotonic()
    while await _catch_ups(edge) != 0:
        assert time.monotonic() - began < GUARD_S, f"the catch-up still holds its slot after {GUARD_S:g} s"
        await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Lab:
    """The private stack, one long conversation on its log, and how to follow it from the start."""

    settings: Settings
    kafka: int  # the broker's pid
    events: list[Event]
    path: str
    token: str
    start_cursor: str
    logs: Path


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    state = Path(tmp_path_factory.mktemp("sse-stall"))
    settings = private_settings(state / "stack", topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    events = big_turns(conv, EVENTS)
    p = partition_for(conv, PARTITIONS)
    with private_stack(settings, say=_say) as nodes:

        async def publish() -> None:
            async with Producer(settings) as producer:
                await producer.send(events)

        asyncio.run(publish())
        kafka = nodes.kafka.process.pid()
        assert kafka is not None, "the private Kafka is not running"
        yield Lab(
            settings,
            kafka,
            events,
            f"/v1/conversation/stream?conversation_id={conv}",
            edgekit.token(settings, "ops", roles="subscriber"),
            cursors.encode({("e", p): -1, ("d", p): -1}),  # served nothing: catch up on all of it
            state / "logs",
        )


@contextlib.asynccontextmanager
async def _mid_catch_up(
    edge: Edge, lab: Lab
) -> AsyncIterator[tuple[RawStream, AsyncIterator[SseEvent], list[SseEvent]]]:
    """A stream catching up from the log's start with its first data frame read, then the broker
    paused (SIGCONT at the end). Yields the stream, its one parser (a second one would lose what
    the first holds) and the frames read so far."""
    stream = await RawStream(
        "127.0.0.1",
        edge.port,
        lab.path,
        lab.token,
        lab.start_cursor,
        rcvbuf=4096,
        buffer_limit=8192,
        checkpoints=True,
    ).open()
    frames: list[SseEvent] = []
    parsed = aiter(stream)
    try:
        async for frame in parsed:  # the edge blocks on writing while we do not read
            frames.append(frame)
            if frame.data and frame.id is not None:
                break
        assert await _catch_ups(edge) == 1
        os.kill(lab.kafka, signal.SIGSTOP)
        try:
            yield stream, parsed, frames
        finally:
            os.kill(lab.kafka, signal.SIGCONT)
    finally:
        stream.close()


async def _stalled(edge: Edge, lab: Lab) -> list[SseEvent]:
    """Frames of a catch-up during which the broker was paused: all of them, up to the stream's end."""
    async with _mid_catch_up(edge, lab) as (_, parsed, frames):
        paused = time.monotonic()
        await asyncio.wait_for(_until_the_end(parsed, frames), GUARD_S)
        print(f"the stream ended {time.monotonic() - paused:.1f} s after the pause (bound {STALL_S:g} s)")
        assert await _catch_ups(edge) == 0  # the slot is free, the broker still paused
    return frames


async def _resumed(edge: Edge, lab: Lab, last_id: str, count: int) -> list[SseEvent]:
    """The next ``count`` frames after ``last_id``, once the edge accepts streams again."""
    began = time.monotonic()
    while True:
        try:
            return await _first_frames(edge, lab.path, lab.token, count, last_id, GUARD_S)
        except SseHttpError as exc:  # 503 while the edge's probe still finds Kafka silent
            assert exc.status == 503, exc
            assert time.monotonic() - began < GUARD_S, f"still refused after {GUARD_S:g} s: {exc}"
            await asyncio.sleep(0.5)


def test_a_broker_paused_mid_catch_up_ends_the_stream_frees_the_slot_and_the_resume_loses_nothing(
    lab: Lab,
) -> None:
    with running_edge(lab.settings, lab.logs, **KNOBS) as edge:
        first = asyncio.run(_stalled(edge, lab))
        data = [f for f in first if f.data and f.id is not None]
        last_id = [f.id for f in first if f.id is not None][-1]
        rest = asyncio.run(_resumed(edge, lab, last_id, EVENTS - len(data)))

    assert 0 < len(data) < EVENTS, f"the broker was not paused mid-catch-up ({len(data)} of {EVENTS} frames)"
    after_data = first[first.index(data[-1]) + 1 :]
    kinds = [f.event or "checkpoint" for f in after_data]
    assert "heartbeat" in kinds, f"no heartbeat while the catch-up read nothing: {kinds}"
    end = first[-1]
    assert (end.event, end.id, end.retry) == ("unavailable", None, 2000), end
    assert "read nothing from Kafka" in orjson.loads(end.data)["detail"]
    assert all(f.id is None for f in first if f.event in ("heartbeat", "unavailable"))
    received = [orjson.loads(f.data)["event_id"] for f in data + rest]
    assert received == [e.event_id for e in lab.events]  # in order, once each: no gap, no duplicate


def test_a_client_leaving_a_stalled_catch_up_frees_its_slot_at_once(lab: Lab) -> None:
    async def scenario(edge: Edge) -> None:
        async with _mid_catch_up(edge, lab) as (stream, _, _):
            stream.close()
            await _until_no_catch_up(edge)  # the broker still paused; the stall bound is far off

    with running_edge(lab.settings, lab.logs, **PATIENT) as edge:
        asyncio.run(scenario(edge))


def test_an_edge_stopping_ends_a_stalled_catch_up_with_shutdown(lab: Lab) -> None:
    async def scenario(edge: Edge) -> list[SseEvent]:
        async with _mid_catch_up(edge, lab) as (_, parsed, frames):

            async def until_heartbeat() -> None:
                async for frame in parsed:
                    frames.append(frame)
                    if frame.event == "heartbeat":
                        return  # the catch-up now waits on a silent broker

            await asyncio.wait_for(until_heartbeat(), GUARD_S)
            assert edge.proc is not None
            edge.proc.popen.send_signal(signal.SIGTERM)
            await asyncio.wait_for(_until_the_end(parsed, frames), GUARD_S)
        return frames

    with running_edge(lab.settings, lab.logs, **PATIENT) as edge:
        frames = asyncio.run(scenario(edge))
    end = frames[-1]
    assert (end.event, end.id, end.retry) == ("shutdown", None, 2000), end


# -- an edge in this process: the test is its client's socket --------------------------------
def _catch_ups_here() -> float:
    value = EDGE_REGISTRY.get_sample_value("ledgerflow_sse_catch_ups")
    assert value is not None, "the edge exports no ledgerflow_sse_catch_ups"
    return value


@dataclass
class Holdings:
    """What the edge held for the stream when a frame was handed to the client's socket."""

    catch_ups: float
    subscribers: int


class SlowClient:
    """One stream's ASGI ``receive`` and ``send``: records each write and what the edge held
    then; the first write ``block_on`` picks never ends (the server cancels it when the client
    disconnects: ``disconnect``)."""

    def __init__(self, ctx: EdgeContext, block_on: Callable[[bytes], bool]) -> None:
        self.ctx = ctx
        self.block_on = block_on
        self.held: list[tuple[bytes, Holdings]] = []
        self.blocked = asyncio.Event()
        self.gone = asyncio.Event()
        self._requested = False

    def disconnect(self) -> None:
        self.gone.set()

    async def receive(self) -> Message:
        if not self._requested:
            self._requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await self.gone.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        chunk = message.get("body", b"")
        assert isinstance(chunk, bytes)
        self.held.append((chunk, Holdings(_catch_ups_here(), self.ctx.hub.subscribers)))
        if not self.blocked.is_set() and self.block_on(chunk):
            self.blocked.set()
            await asyncio.Event().wait()  # a client that takes nothing more


def _data(chunk: bytes) -> bool:
    return chunk.startswith(b"id: ") and b"\ndata: " in chunk  # data frames, not a checkpoint


def _unavailable(chunk: bytes) -> bool:
    return b"event: unavailable" in chunk


def _scope(lab: Lab) -> Scope:
    path, _, query_string = lab.path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},  # as uvicorn serves the edge
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query_string.encode(),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {lab.token}".encode()),
            (b"last-event-id", lab.start_cursor.encode()),
            (b"accept", b"text/event-stream"),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }


@contextlib.asynccontextmanager
async def _edge_here(lab: Lab, stall_s: float) -> AsyncIterator[tuple[Starlette, EdgeContext]]:
    app = create_app(lab.settings, heartbeat_s=0.5)
    async with app.router.lifespan_context(app):
        ctx: EdgeContext = app.state.ctx
        ctx.catch_up_stall_s = stall_s
        ctx.hub.catch_up_slots = 1
        yield app, ctx


def test_the_unavailable_frame_is_written_after_the_reader_slot_and_subscription_are_freed(lab: Lab) -> None:
    async def scenario() -> SlowClient:
        async with _edge_here(lab, STALL_S) as (app, ctx):
            client = SlowClient(ctx, block_on=_unavailable)
            paused = False

            async def send(message: Message) -> None:
                nonlocal paused
                await client.send(message)
                if not paused and _data(client.held[-1][0]):
                    os.kill(lab.kafka, signal.SIGSTOP)  # the first data frame is out: pause the broker
                    paused = True

            try:
                response = asyncio.ensure_future(app(_scope(lab), client.receive, send))
                await asyncio.wait_for(client.blocked.wait(), GUARD_S)
                assert _catch_ups_here() == 0 and ctx.hub.subscribers == 0  # while the client takes nothing
                client.disconnect()
                await asyncio.wait_for(response, GUARD_S)
            finally:
                os.kill(lab.kafka, signal.SIGCONT)
            assert paused, "the broker was never paused"
            return client

    client = asyncio.run(scenario())
    last, held = next((chunk, held) for chunk, held in client.held if _unavailable(chunk))
    assert b"read nothing from Kafka" in last
    assert held == Holdings(catch_ups=0, subscribers=0), f"the edge still held {held} while writing {last!r}"


def test_a_client_leaving_mid_write_has_its_reader_closed_when_the_response_ends(lab: Lab) -> None:
    async def scenario() -> tuple[float, float]:
        async with _edge_here(lab, 600.0) as (app, ctx):
            client = SlowClient(ctx, block_on=_data)  # the first data frame's write never ends
            response = asyncio.ensure_future(app(_scope(lab), client.receive, client.send))
            await asyncio.wait_for(client.blocked.wait(), GUARD_S)
            during = _catch_ups_here()
            client.disconnect()
            await asyncio.wait_for(response, GUARD_S)
            return during, _catch_ups_here()  # at once: no turn of the loop for a finalizer task

    during, after = asyncio.run(scenario())
    assert during == 1, "the stream was not mid-catch-up"
    assert after == 0, "the catch-up's reader and slot outlived the response"


def test_a_heartbeat_write_blocked_past_the_stall_bound_does_not_end_a_catch_up_that_reads(lab: Lab) -> None:
    async def scenario() -> list[bytes]:
        async with _edge_here(lab, STALL_S) as (app, ctx):
            client = SlowClient(ctx, block_on=lambda chunk: False)
            state = {"paused": False, "blocked": False}
            got = asyncio.Event()

            async def send(message: Message) -> None:
                await client.send(message)
                chunk = client.held[-1][0]
                if not state["paused"] and _data(chunk):
                    os.kill(lab.kafka, signal.SIGSTOP)  # the catch-up now waits on Kafka: heartbeats
                    state["paused"] = True
                elif state["paused"] and not state["blocked"] and b"event: heartbeat" in chunk:
                    state["blocked"] = True
                    os.kill(lab.kafka, signal.SIGCONT)  # the read in flight comes back ...
                    await asyncio.sleep(2 * STALL_S)  # ... while the client takes this write late
                frames = sum(c.count(b"\ndata: ") for c, _ in client.held if _data(c))
                if frames >= EVENTS or _unavailable(chunk):
                    got.set()

            try:
                response = asyncio.ensure_future(app(_scope(lab), client.receive, send))
                await asyncio.wait_for(got.wait(), GUARD_S)
                client.disconnect()
                await asyncio.wait_for(response, GUARD_S)
            finally:
                os.kill(lab.kafka, signal.SIGCONT)
            assert state["blocked"], "no heartbeat was written while the broker was paused"
            return [chunk for chunk, _ in client.held]

    chunks = asyncio.run(scenario())
    assert not any(_unavailable(c) for c in chunks), "the catch-up was dropped as a stall"
    data = b"".join(c for c in chunks if _data(c))
    ids = [orjson.loads(line[6:])["event_id"] for line in data.split(b"\n") if line.startswith(b"data: ")]
    assert ids == [e.event_id for e in lab.events]  # the whole log, in order, once
