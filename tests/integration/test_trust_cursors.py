"""Issue 18, case 5 on the real edge and Kafka: a ``Last-Event-ID`` ahead of the log end
gets ``event: reset`` (restart live) instead of being accepted silently, and the stream
then delivers what is written next."""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit

import httpx
import orjson

from ledgerflow.api import cursors
from ledgerflow.api.hub import partition_for
from ledgerflow.sse_client import RawStream, SseEvent

PARTITIONS = 6  # conversation.events and policy.decisions (ledgerflow/topics.py)


def test_a_cursor_beyond_the_log_end_gets_a_reset_and_restarts_live(edge: str, tokens) -> None:
    token = tokens("acme", "subscriber,producer")
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    part = partition_for(conv, PARTITIONS)
    ahead = cursors.encode({("e", part): 1_000_000, ("d", part): -1})
    port = urlsplit(edge).port
    assert port is not None
    turn = {"type": "ConversationStarted", "subject": conv, "payload": {"actor": "bo", "model": "m"}}

    async def scenario() -> list[SseEvent]:
        path = f"/v1/conversation/stream?conversation_id={conv}"
        stream = await RawStream("127.0.0.1", port, path, token, ahead, checkpoints=True).open()
        got: list[SseEvent] = []

        async def read() -> None:
            async for frame in stream:
                if frame.event == "heartbeat":
                    continue
                got.append(frame)
                if frame.id is not None and frame.data == "":  # the checkpoint: publish now
                    async with httpx.AsyncClient(timeout=10) as client:
                        resp = await client.post(
                            f"{edge}/v1/events", json=turn, headers={"Authorization": f"Bearer {token}"}
                        )
                        assert resp.status_code == 202, resp.text
                if frame.data and frame.id is not None:
                    return

        try:
            await asyncio.wait_for(read(), 30)
        finally:
            stream.close()
        return got

    reset, checkpoint, data = asyncio.run(scenario())
    assert reset.event == "reset" and reset.id is None
    body = orjson.loads(reset.data)
    assert body["restart"] == "live"
    assert body["reason"].startswith(f"cursor beyond the log end on e{part} ("), body
    assert checkpoint.id == body["cursor"]
    restart = cursors.decode(body["cursor"])
    assert restart[("e", part)] < 1_000_000  # the live position, not the claimed one
    assert orjson.loads(data.data)["subject"] == conv  # the stream is live: the next write arrives
