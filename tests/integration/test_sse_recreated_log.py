"""A log deleted and re-created under a running edge, against a real edge process and broker.

Found by a probing review: the edge's SSE hub kept its read positions of the old log, so every
stream registered with them (open ones, and new ones until the hub read a record of the new log)
waited for offsets past the old log's end: the new log's first records were never sent, no frame
said so, and a conversation stream resuming from the start of a partition the hub had read far in
the old log spun in its catch-up until `unavailable`, again at every reconnect. Now the hub notices
(a record, or a log end, below its read position), takes the new log's position, and ends the
streams reading that partition with `unavailable`; their reconnect is a `reset` (the cursor is past
the new log's end), and streams opened since receive the new log's records. Since the hub drops
topics that vanish (``kafka/vanished.py``), it usually sees the deletion itself: the streams end
then, saying the topics are missing, and new streams get 503 until the hub reads the new topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.errors import LedgerflowError
from ledgerflow.kafka.admin import ensure_topics, partition_counts
from ledgerflow.sse_client import RawStream, SseEvent, SseHttpError
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS
from tests.support.processes import running_edge


def _turns(conversation: str, count: int, tag: str) -> list[Event]:
    now = time.time_ns() // 1000
    return [
        new_event(
            "MessageSubmitted",
            tenant="acme",
            subject=conversation,
            producer="test",
            occurred_at_micros=now + i,
            payload=MessageSubmitted(f"{tag}{i}", "user", f"{tag} {i}", "slm-1", None),
        )
        for i in range(count)
    ]


async def _publish(settings: Settings, events: list[Event]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for event in events:
            topic = settings.topic(CONVERSATION_EVENTS)
            await producer.send_and_wait(topic, codec.encode(event), key=event.subject.encode())
    finally:
        await producer.stop()


async def _recreate(settings: Settings) -> None:
    names = [settings.topic(CONVERSATION_EVENTS), settings.topic(POLICY_DECISIONS)]
    before = await partition_counts(settings, names)
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            await ensure_topics(settings)
            if await partition_counts(settings, names) == before:
                return
        except (KafkaError, LedgerflowError):
            pass
        assert time.monotonic() < deadline, "the topics were not re-created within 30 s"
        await asyncio.sleep(0.5)


class Reader:
    """One stream's frames, read on across calls (one parser), remembering the last id received."""

    def __init__(self, stream: RawStream) -> None:
        self.stream = stream
        self.frames = aiter(stream)
        self.last_id: str | None = None

    async def take(self, wanted: int, seconds: float) -> list[SseEvent]:
        """Frames other than heartbeats and checkpoints until ``wanted`` came, the stream ended, or
        ``seconds`` passed."""
        got: list[SseEvent] = []

        async def read() -> None:
            async for frame in self.frames:
                self.last_id = frame.id or self.last_id
                if frame.event not in ("heartbeat", ""):
                    got.append(frame)
                    if len(got) >= wanted:
                        return

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(), seconds)
        return got


async def _open(port: int, path: str, token: str, last_id: str | None = None) -> Reader:
    """The stream, opened once the edge reads the topics: while they are deleted (the hub saw them
    missing) it answers 503 + Retry-After, and it reads them again by itself once they exist."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return Reader(await RawStream("127.0.0.1", port, path, token, last_id, checkpoints=True).open())
        except SseHttpError as exc:
            if exc.status != 503 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def test_a_log_recreated_under_a_running_edge_ends_its_streams_and_new_ones_get_the_new_log(
    settings: Settings, log_dir: Path, tokens
) -> None:
    token = tokens("acme", "subscriber")
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    path = f"/v1/conversation/stream?conversation_id={conversation}"

    async def scenario(port: int) -> tuple[list[SseEvent], list[SseEvent], list[SseEvent], list[str]]:
        old = await _open(port, path, token)
        try:
            await _publish(settings, _turns(conversation, 5, "old"))
            assert len(await old.take(5, 20)) == 5  # the hub read the old log up to offset 4
            await _recreate(settings)
            # Past the edge's cached Kafka probe (PROBE_CACHE_S): the new stream's own probe finds the
            # log end below the hub's position. (Within it, the hub notices at the new log's first
            # record instead and ends this stream too: its reconnect is a reset, never a silent skip.)
            await asyncio.sleep(1.5)
            new = await _open(port, path, token)
            try:
                fresh = _turns(conversation, 3, "new")
                await _publish(settings, fresh)
                ended = await old.take(1, 20)
                received = await new.take(3, 20)
            finally:
                new.stream.close()
        finally:
            old.stream.close()
        resumed = await _open(port, path, token, old.last_id)
        try:
            reset = await resumed.take(1, 10)
        finally:
            resumed.stream.close()
        return ended, received, reset, [e.event_id for e in fresh]

    with running_edge(settings, log_dir, extra_env={"LEDGERFLOW_SSE_HEARTBEAT_S": "0.3"}) as (_, base):
        ended, received, reset, fresh_ids = asyncio.run(scenario(int(base.rsplit(":", 1)[1])))
    assert [f.event for f in ended] == ["unavailable"], ended
    # Ended when the hub saw the topics missing (or, had it missed the deletion, its log re-created).
    detail = orjson.loads(ended[0].data)["detail"]
    assert "missing" in detail or "re-created" in detail, detail
    assert [(f.event, orjson.loads(f.data).get("event_id")) for f in received] == [
        ("MessageSubmitted", i) for i in fresh_ids
    ], received
    assert [f.event for f in reset] == ["reset"], reset
    assert orjson.loads(reset[0].data)["reason"].startswith("cursor beyond the log end")
