"""The edge's Kafka topics deleted under a running edge, and re-created: no log flood, 503s that
name the topic, and streams again once the topics exist, with no one restarting the edge.

Before, the SSE hub kept its partitions of the deleted topics assigned: aiokafka's fetcher,
finding no leader for them, asked for metadata in a loop without backoff and logged
``Topic … not found in cluster metadata`` at each answer — thousands of lines a second (about
8,300/s and half a core on the dev stack) for as long as the topics stayed away. Now the hub drops
the vanished partitions from its consumer (``kafka/vanished.py``), answers streams that need them
with 503 + Retry-After naming the topic, looks for the topics again with a capped backoff, and
reads them again when they are back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from starlette.applications import Starlette
from starlette.types import Message, Scope

from ledgerflow.api.app import create_app
from ledgerflow.api.context import EdgeContext
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS

WATCH_S = 4.0
MAX_LOG_RECORDS = 60
"""Log records the edge may write while its topics stay deleted for ``WATCH_S``: a warning per
topic and per retry is fine; before the fix it wrote thousands."""
GUARD_S = 60.0  # how long the test waits for what it expects (a hang guard, not a bound)


class Counting(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def counted() -> Iterator[Counting]:
    handler = Counting()
    loggers = [logging.getLogger(), logging.getLogger("aiokafka")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        yield handler
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)


def _turn(conversation: str, tag: str) -> Event:
    return new_event(
        "MessageSubmitted",
        tenant="acme",
        subject=conversation,
        producer="test",
        occurred_at_micros=time.time_ns() // 1000,
        payload=MessageSubmitted(tag, "user", tag, "slm-1", None),
    )


async def _publish(settings: Settings, event: Event) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        topic = settings.topic(CONVERSATION_EVENTS)
        await producer.send_and_wait(topic, codec.encode(event), key=event.subject.encode())
    finally:
        await producer.stop()


async def _delete(settings: Settings, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(names)
        deadline = time.monotonic() + GUARD_S
        while set(names) & set(await admin.list_topics()):
            assert time.monotonic() < deadline, "the topics were not deleted"
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def _scope(path: str, token: str, last_id: str | None = None) -> Scope:
    path, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"accept", b"text/event-stream"),
            *([(b"last-event-id", last_id.encode())] if last_id else []),
        ],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 80),
    }


class Stream:
    """One request to the in-process edge: its status, headers and body chunks as they come."""

    def __init__(self, app: Starlette, path: str, token: str, last_id: str | None = None) -> None:
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.started = asyncio.Event()
        self.grew = asyncio.Event()
        self._gone = asyncio.Event()
        self.hold = False  # a client that takes nothing after its first data frame
        self.task = asyncio.ensure_future(app(_scope(path, token, last_id), self._receive, self._send))

    async def _receive(self) -> Message:
        await self._gone.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.headers = {k.decode().lower(): v.decode() for k, v in message["headers"]}
            self.started.set()
        elif message["type"] == "http.response.body":
            chunk = message.get("body", b"")
            self.body += chunk
            self.grew.set()
            if self.hold and b"data: " in chunk:
                await self._gone.wait()

    async def until(self, wanted: bytes) -> None:
        deadline = time.monotonic() + GUARD_S
        while wanted not in self.body:
            assert not self.task.done() or wanted in self.body, f"ended without {wanted!r}: {self.body!r}"
            assert time.monotonic() < deadline, f"no {wanted!r} in {self.body!r}"
            self.grew.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.grew.wait(), 0.5)

    async def close(self) -> None:
        self._gone.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 10)


@contextlib.asynccontextmanager
async def _edge(settings: Settings) -> AsyncIterator[tuple[Starlette, EdgeContext]]:
    app = create_app(settings, heartbeat_s=0.5)
    async with app.router.lifespan_context(app):
        yield app, app.state.ctx


def test_deleted_topics_do_not_flood_the_log_and_the_edge_reads_them_again_when_back(
    settings: Settings, tokens
) -> None:
    token = tokens("acme", "subscriber")
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    path = f"/v1/conversation/stream?conversation_id={conversation}"
    names = [settings.topic(CONVERSATION_EVENTS), settings.topic(POLICY_DECISIONS)]

    async def scenario() -> tuple[Stream, bytes]:
        async with _edge(settings) as (app, ctx):
            ctx.hub.reattach_backoff = (0.5, 1.0)  # look for the topics again often (default up to 30 s)
            first = Stream(app, path, token)
            await first.until(b"id: ")  # the stream's checkpoint: the hub reads for it
            with counted() as seen:
                await _delete(settings, names)
                await asyncio.sleep(WATCH_S)
                flood = len(seen.records)
                sample = sorted({f"{r.name}: {r.getMessage()}"[:160] for r in seen.records})[:10]
            assert flood <= MAX_LOG_RECORDS, f"{flood} log records in {WATCH_S:g} s, topics gone: {sample}"
            await first.until(b"event: unavailable")  # the open stream was told, with retry:
            await first.close()
            refused = Stream(app, path, token)
            await asyncio.wait_for(refused.task, GUARD_S)
            assert refused.status == 503, refused.body
            # back: the hub reads the topics again by itself; a new stream gets the new log's records
            await ensure_topics(settings)
            deadline = time.monotonic() + GUARD_S
            while True:
                again = Stream(app, path, token)
                await asyncio.wait_for(again.started.wait(), GUARD_S)
                if again.status == 200:
                    break
                await again.close()
                assert time.monotonic() < deadline, f"still {again.status} after the topics came back"
                await asyncio.sleep(0.5)
            await again.until(b"id: ")
            event = _turn(conversation, "back")
            await _publish(settings, event)
            await again.until(event.event_id.encode())
            await again.close()
            return refused, first.body

    refused, first = asyncio.run(scenario())
    assert refused.headers.get("retry-after"), refused.headers
    detail = orjson.loads(refused.body)["detail"]
    assert settings.topic(CONVERSATION_EVENTS) in detail and "\n" not in detail, detail
    assert b"retry: " in first


def test_a_catch_up_under_way_drops_a_deleted_topic_at_once(settings: Settings, tokens) -> None:
    """A stream resuming from the start of its log holds a catch-up consumer while its client takes
    nothing; its topic deleted, that consumer (assigned one partition) looped on metadata too."""
    token = tokens("acme", "subscriber")
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    path = f"/v1/conversation/stream?conversation_id={conversation}"
    names = [settings.topic(CONVERSATION_EVENTS), settings.topic(POLICY_DECISIONS)]

    async def scenario() -> None:
        async with _edge(settings) as (app, ctx):
            first = Stream(app, path, token)
            await first.until(b"id: ")
            start = first.body.split(b"id: ", 1)[1].split(b"\n", 1)[0].decode()  # its checkpoint
            await first.close()
            producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
            await producer.start()
            try:
                topic = settings.topic(CONVERSATION_EVENTS)
                for i in range(50):
                    event = _turn(conversation, f"t{i}")
                    await producer.send(topic, codec.encode(event), key=conversation.encode())
                await producer.flush()
            finally:
                await producer.stop()
            deadline = time.monotonic() + GUARD_S
            while ctx.hub.live_positions(ctx.hub.stream_keys("acme", conversation)) == dict.fromkeys(
                ctx.hub.stream_keys("acme", conversation), -1
            ):
                assert time.monotonic() < deadline, "the hub did not read the turns"
                await asyncio.sleep(0.1)
            resuming = Stream(app, path, token, last_id=start)
            resuming.hold = True  # its first catch-up write is never taken: the catch-up holds its reader
            await resuming.until(b"data: ")
            with counted() as seen:
                await _delete(settings, names)
                await asyncio.sleep(WATCH_S)
            flood = [f"{r.name}: {r.getMessage()}"[:160] for r in seen.records]
            await resuming.close()
            assert len(flood) <= MAX_LOG_RECORDS, f"{len(flood)} log records in {WATCH_S:g} s: {flood[:6]}"

    asyncio.run(scenario())


def test_a_topic_that_vanishes_while_the_hub_reattaches_another_is_looked_for_too(settings: Settings) -> None:
    """The hub looked for its missing topics in one task and ended it once a look succeeded. A topic
    that vanished during that look (while it re-attached the topics it had found) was added to the
    missing ones with the task still running, so no new task was started: nobody looked for it any
    more, and every stream and step answered 503 naming it until the edge restarted."""
    from ledgerflow.api.hub import Hub

    events, decisions = settings.topic(CONVERSATION_EVENTS), settings.topic(POLICY_DECISIONS)

    class Racing(Hub):
        raced = False

        async def _reattach(self, counts: dict[str, int]) -> None:
            if not self.raced:  # policy.decisions vanishes while conversation.events is re-attached
                self.raced = True
                await _delete(settings, [decisions])
                deadline = time.monotonic() + GUARD_S
                while decisions not in self._missing:
                    assert time.monotonic() < deadline, "the hub did not see policy.decisions go"
                    await asyncio.sleep(0.1)
            await super()._reattach(counts)

    async def scenario() -> set[str]:
        await ensure_topics(settings)
        hub = Racing(settings)
        hub.reattach_backoff = (0.5, 1.0)
        await hub.start()
        try:
            await _delete(settings, [events])
            deadline = time.monotonic() + GUARD_S
            while events not in hub._missing:
                assert time.monotonic() < deadline, "the hub did not see conversation.events go"
                await asyncio.sleep(0.1)
            await ensure_topics(settings)  # conversation.events back; the look re-attaches it
            while not hub.raced or events in hub._missing:
                assert time.monotonic() < deadline, "the hub did not re-attach conversation.events"
                await asyncio.sleep(0.1)
            await ensure_topics(settings)  # policy.decisions back too
            settle = time.monotonic() + 10.0
            while hub._missing and time.monotonic() < settle:
                await asyncio.sleep(0.2)
            return set(hub._missing)
        finally:
            await hub.stop()

    assert asyncio.run(scenario()) == set(), "a topic back is never read again"
