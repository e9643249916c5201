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
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson

from ledgerflow.api import cursors
from ledgerflow.api.hub import partition_for
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
EVENTS = 4000  # ~9 MB on one partition: far more than the edge's consumer and the sockets buffer
LIMIT_S = 60.0  # how long the test waits for a frame before failing (a hang guard, not a bound)


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


async def _stalled(edge: Edge, kafka: int, path: str, token: str, cursor: str) -> list[SseEvent]:
    """Frames of a catch-up during which the broker was paused: all of them, up to the stream's end."""
    stream = await RawStream(
        "127.0.0.1", edge.port, path, token, cursor, rcvbuf=4096, buffer_limit=8192, checkpoints=True
    ).open()
    frames: list[SseEvent] = []
    parsed = aiter(stream)  # one parser for the whole stream: a second one would lose what the first holds
    try:
        async for frame in parsed:  # the edge blocks on writing while we do not read
            frames.append(frame)
            if frame.data and frame.id is not None:
                break
        assert await _catch_ups(edge) == 1
        os.kill(kafka, signal.SIGSTOP)
        paused = time.monotonic()
        await asyncio.wait_for(_until_the_end(parsed, frames), LIMIT_S)
        print(f"the stream ended {time.monotonic() - paused:.1f} s after the pause (bound {STALL_S:g} s)")
        assert await _catch_ups(edge) == 0  # the slot is free, the broker still paused
    finally:
        stream.close()
    return frames


async def _resumed(edge: Edge, path: str, token: str, last_id: str, count: int) -> list[SseEvent]:
    """The next ``count`` frames after ``last_id``, once the edge accepts streams again."""
    began = time.monotonic()
    while True:
        try:
            return await _first_frames(edge, path, token, count, last_id, LIMIT_S)
        except SseHttpError as exc:  # 503 while the edge's probe still finds Kafka silent
            assert exc.status == 503, exc
            assert time.monotonic() - began < LIMIT_S, f"still refused after {LIMIT_S:g} s: {exc}"
            await asyncio.sleep(0.5)


def test_a_broker_paused_mid_catch_up_ends_the_stream_frees_the_slot_and_the_resume_loses_nothing(
    tmp_path: Path,
) -> None:
    settings = private_settings(tmp_path / "stack", topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    events = big_turns(conv, EVENTS)
    path = f"/v1/conversation/stream?conversation_id={conv}"
    p = partition_for(conv, PARTITIONS)
    start_cursor = cursors.encode({("e", p): -1, ("d", p): -1})  # served nothing: catch up on all of it
    with private_stack(settings, say=_say) as nodes:

        async def publish() -> None:
            async with Producer(settings) as producer:
                await producer.send(events)

        asyncio.run(publish())
        token = edgekit.token(settings, "ops", roles="subscriber")
        kafka = nodes.kafka.process.pid()
        assert kafka is not None, "the private Kafka is not running"
        with running_edge(settings, tmp_path / "logs", **KNOBS) as edge:
            try:
                first = asyncio.run(_stalled(edge, kafka, path, token, start_cursor))
            finally:
                os.kill(kafka, signal.SIGCONT)
            data = [f for f in first if f.data and f.id is not None]
            last_id = [f.id for f in first if f.id is not None][-1]
            rest = asyncio.run(_resumed(edge, path, token, last_id, EVENTS - len(data)))

    assert 0 < len(data) < EVENTS, f"the broker was not paused mid-catch-up ({len(data)} of {EVENTS} frames)"
    after_data = first[first.index(data[-1]) + 1 :]
    kinds = [f.event or "checkpoint" for f in after_data]
    assert "heartbeat" in kinds, f"no heartbeat while the catch-up read nothing: {kinds}"
    end = first[-1]
    assert (end.event, end.id, end.retry) == ("unavailable", None, 2000), end
    assert "read nothing from Kafka" in orjson.loads(end.data)["detail"]
    assert all(f.id is None for f in first if f.event in ("heartbeat", "unavailable"))
    received = [orjson.loads(f.data)["event_id"] for f in data + rest]
    assert received == [e.event_id for e in events]  # in order, once each: no gap, no duplicate
