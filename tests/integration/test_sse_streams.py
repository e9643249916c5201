"""SSE streams on a real edge process, with real HTTP clients on real ports.

Each test starts its own edge (``ledgerflow serve`` as a child process) with the SSE
knobs it needs from the environment, publishes to its own topics, and compares what the
subscribers received with the log read back from Kafka: per topic-partition, the
stream's records in offset order, each exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from ledgerflow.api import cursors
from ledgerflow.api.hub import partition_for
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted, PolicyDecision
from ledgerflow.sse_client import RawStream, SseEvent, follow
from ledgerflow.timefmt import rfc3339_seconds
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS
from ledgerflow.traffic import interleaved
from tests.support.processes import Process, free_port, start, wait_http_ready

PARTITIONS = 6
FAST = {"LEDGERFLOW_SSE_HEARTBEAT_S": "0.3"}
Key = tuple[str, int]


# -- the edge, the log, the traffic -------------------------------------------------------
@dataclass
class Edge:
    settings: Settings
    log_dir: Path
    env: dict[str, str]
    proc: Process | None = None
    base: str = ""

    def start(self) -> Edge:
        http = f"127.0.0.1:{free_port()}"
        self.proc = start(
            self.settings.with_overrides(http=http), "edge", "serve", log_dir=self.log_dir, extra_env=self.env
        )
        self.base = f"http://{http}"
        try:
            wait_http_ready(self.proc, self.base)
        except RuntimeError as exc:
            self.proc.stop()
            pytest.fail(str(exc), pytrace=False)
        return self

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def stop(self) -> int:
        assert self.proc is not None
        return self.proc.stop()


@contextlib.contextmanager
def running_edge(settings: Settings, log_dir: Path, **env: str) -> Iterator[Edge]:
    edge = Edge(settings, log_dir, FAST | env).start()
    try:
        yield edge
    finally:
        edge.stop()


def decision_for(event: Event) -> Event:
    return new_event(
        "PolicyDecision",
        tenant=event.tenant,
        subject=event.subject,
        producer="test-policy",
        occurred_at_micros=event.occurred_at + 1,
        payload=PolicyDecision(
            input_event_id=event.event_id,
            input_hash=None,
            conversation_id=event.subject,
            outcome="allow",
            score=0.0,
            matched_rules=(),
            rule_pack_version=1,
            constitution_hash="0" * 64,
            training_version=0,
            training_enabled=False,
        ),
    )


def traffic(seed: int, conversations: int, tenants: tuple[str, ...] = ("acme", "globex")) -> list[Event]:
    """Conversation events of several tenants, interleaved, each user turn followed by its decision."""
    rng = random.Random(seed)
    out = []
    for event in interleaved(rng, tenants, conversations, time.time_ns() // 1000, run_id=f"{seed:x}"):
        out.append(event)
        if isinstance(event.payload, MessageSubmitted) and event.payload.role == "user":
            out.append(decision_for(event))
    return out


class Producer:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=2
        )

    async def __aenter__(self) -> Producer:
        await self._producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._producer.stop()

    async def send(self, events: list[Event]) -> None:
        for event in events:
            base = POLICY_DECISIONS if event.type == "PolicyDecision" else CONVERSATION_EVENTS
            await self._producer.send(
                self._settings.topic(base), codec.encode(event), key=event.subject.encode()
            )
        await self._producer.flush()


async def read_log(settings: Settings, tenant: str, conversation: str | None = None) -> dict[Key, list[str]]:
    """The stream's records as the log holds them: event ids per topic-partition, in offset order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [
            TopicPartition(settings.topic(base), p)
            for base in (CONVERSATION_EVENTS, POLICY_DECISIONS)
            for p in range(PARTITIONS)
        ]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        starts = await consumer.beginning_offsets(tps)
        out: dict[Key, list[str]] = defaultdict(list)
        for tp in tps:
            consumer.seek(tp, starts[tp])
            code = "d" if tp.topic.endswith(POLICY_DECISIONS) else "e"
            while await consumer.position(tp) < ends[tp]:
                for record in (await consumer.getmany(tp, timeout_ms=2000)).get(tp, []):
                    if record.offset >= ends[tp]:
                        break
                    event = codec.decode(record.value)
                    conv = getattr(event.payload, "conversation_id", event.subject)
                    if event.tenant == tenant and conversation in (None, conv):
                        out[(code, tp.partition)].append(event.event_id)
        return dict(out)
    finally:
        await consumer.stop()


def assert_exactly_the_log(received: list[SseEvent], log: dict[Key, list[str]]) -> None:
    """Every record of the log once, in offset order per topic-partition, nothing else."""
    where = {event_id: key for key, ids in log.items() for event_id in ids}
    ids = [orjson.loads(frame.data)["event_id"] for frame in received]
    dups = [i for i, n in Counter(ids).items() if n > 1]
    assert not dups, f"{len(dups)} duplicated events, e.g. {dups[:3]}"
    strangers = [i for i in ids if i not in where]
    assert not strangers, f"{len(strangers)} events that are not this stream's, e.g. {strangers[:3]}"
    got: dict[Key, list[str]] = defaultdict(list)
    for event_id in ids:
        got[where[event_id]].append(event_id)
    missing = sum(len(v) for v in log.values()) - len(ids)
    assert dict(got) == log, f"{missing} events missing or out of order"


# -- a subscriber that disconnects at random points -----------------------------------------
@dataclass
class Follower:
    """Follows one stream, dropping the connection after a random number of data frames
    and resuming with ``Last-Event-ID``; reconnects while the edge is down."""

    url: Callable[[], str]
    path: str
    token: str
    rng: random.Random
    max_run: int = 30
    frames: list[SseEvent] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)
    connections: int = 0
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)

    def done(self, target: int | None) -> bool:
        return target is not None and len(self.frames) >= target

    async def run(self, client: httpx.AsyncClient, target: Callable[[], int | None]) -> None:
        last_id = None
        while not self.done(target()):
            budget = self.rng.randint(1, self.max_run)
            try:
                self.connections += 1
                stream = follow(client, self.url() + self.path, self.token, last_id, checkpoints=True)
                async with contextlib.aclosing(stream) as frames:
                    async for frame in frames:
                        self.subscribed.set()
                        if frame.id is None:
                            self.controls.append(frame.event)
                        elif not frame.data:  # a checkpoint: resume from here, as EventSource would
                            last_id = frame.id
                        else:
                            self.frames.append(frame)
                            last_id = frame.id
                            budget -= 1
                        if budget == 0 or self.done(target()):
                            break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)  # the edge is restarting


async def settle(tasks: list[asyncio.Task[None]], timeout: float) -> None:
    """Wait for the followers; stop those still waiting (the assertions then say what is missing)."""
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def publish_slowly(
    settings: Settings,
    events: list[Event],
    batch: int = 15,
    pause: float = 0.05,
    between: Callable[[int], None] | None = None,
) -> None:
    async with Producer(settings) as producer:
        for n, i in enumerate(range(0, len(events), batch)):
            await producer.send(events[i : i + batch])
            if between is not None:
                between(n)
            await asyncio.sleep(pause)


def big_turns(conv: str, count: int) -> list[Event]:
    """``count`` user turns of tenant acme in ``conv``, 2 KB each (large frames fill socket buffers fast)."""
    now = time.time_ns() // 1000
    return [
        new_event(
            "MessageSubmitted",
            tenant="acme",
            subject=conv,
            producer="test",
            occurred_at_micros=now + i,
            payload=MessageSubmitted(f"t{i}", "user", "x" * 2000, "slm-1", None),
        )
        for i in range(count)
    ]


def _conversations(events: list[Event], tenant: str) -> list[str]:
    """The tenant's conversations, longest first."""
    counts = Counter(e.subject for e in events if e.tenant == tenant)
    return sorted(counts, key=lambda c: (-counts[c], c))


# -- 1. random disconnects, resume, edge restart ---------------------------------------------
def test_random_disconnects_then_resume_yield_exactly_the_log(
    settings: Settings, log_dir: Path, tokens
) -> None:
    events = traffic(seed=11, conversations=40)
    acme, globex = tokens("acme", "subscriber"), tokens("globex", "subscriber")
    convs = _conversations(events, "acme")[:2] + _conversations(events, "globex")[:1]
    with running_edge(settings, log_dir) as edge:
        rng = random.Random(7)
        followers = [Follower(lambda: edge.base, "/v1/streams/tenant", acme, rng)] + [
            Follower(
                lambda: edge.base,
                f"/v1/conversation/stream?conversation_id={c}",
                globex if c in _conversations(events, "globex") else acme,
                rng,
                max_run=2,
            )
            for c in convs
        ]
        expected: list[int | None] = [None] * len(followers)

        async def scenario() -> list[dict[Key, list[str]]]:
            async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
                tasks = [
                    asyncio.create_task(f.run(client, lambda i=i: expected[i]))
                    for i, f in enumerate(followers)
                ]
                await asyncio.wait_for(asyncio.gather(*(f.subscribed.wait() for f in followers)), 30)
                await publish_slowly(settings, events)
                logs = [await read_log(settings, "acme")] + [
                    await read_log(settings, "globex" if c in _conversations(events, "globex") else "acme", c)
                    for c in convs
                ]
                for i, log in enumerate(logs):
                    expected[i] = sum(map(len, log.values()))
                await settle(tasks, 45)
                return logs

        logs = asyncio.run(scenario())
    assert expected[0] and expected[0] > 150, "the tenant stream should carry a few hundred events"
    for follower, log in zip(followers, logs, strict=True):
        assert follower.connections >= 3, "the test should have disconnected several times"
        assert "reset" not in follower.controls
        assert_exactly_the_log(follower.frames, log)


def test_resume_after_an_edge_restart_yields_exactly_the_log(
    settings: Settings, log_dir: Path, tokens
) -> None:
    events = traffic(seed=23, conversations=30)
    token = tokens("acme", "subscriber")
    conv = _conversations(events, "acme")[0]
    edge = Edge(settings, log_dir, dict(FAST)).start()
    try:
        rng = random.Random(5)
        followers = [
            Follower(lambda: edge.base, "/v1/streams/tenant", token, rng),
            Follower(
                lambda: edge.base, f"/v1/conversation/stream?conversation_id={conv}", token, rng, max_run=2
            ),
        ]
        expected: list[int | None] = [None, None]
        exit_codes = []

        def restart_midway(batch: int) -> None:
            if batch == 5:  # stop the edge process; batches 6 to 9 are published while none runs
                exit_codes.append(edge.stop())
            if batch == 9:  # a new edge process, on another port
                edge.start()

        async def scenario() -> list[dict[Key, list[str]]]:
            async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)) as client:
                tasks = [
                    asyncio.create_task(f.run(client, lambda i=i: expected[i]))
                    for i, f in enumerate(followers)
                ]
                await asyncio.wait_for(asyncio.gather(*(f.subscribed.wait() for f in followers)), 30)
                await asyncio.to_thread(
                    lambda: asyncio.run(publish_slowly(settings, events, between=restart_midway))
                )
                logs = [await read_log(settings, "acme"), await read_log(settings, "acme", conv)]
                for i, log in enumerate(logs):
                    expected[i] = sum(map(len, log.values()))
                await settle(tasks, 45)
                return logs

        logs = asyncio.run(scenario())
    finally:
        edge.stop()
    assert exit_codes and exit_codes[0] in (0, -signal.SIGTERM)
    for follower, log in zip(followers, logs, strict=True):
        assert "shutdown" in follower.controls, "the first edge should have ended the stream with `shutdown`"
        assert "reset" not in follower.controls
        assert_exactly_the_log(follower.frames, log)


def test_client_that_left_before_its_first_data_frame_resumes_from_its_start(
    settings: Settings, log_dir: Path, tokens
) -> None:
    token = tokens("acme", "subscriber")
    events = traffic(seed=5, conversations=3, tenants=("acme",))

    async def scenario(edge: Edge) -> tuple[SseEvent, list[SseEvent]]:
        stream = await RawStream("127.0.0.1", edge.port, "/v1/streams/tenant", token, checkpoints=True).open()
        try:
            checkpoint = await asyncio.wait_for(anext(aiter(stream)), 10)
        finally:
            stream.close()  # gone before any data frame
        async with Producer(settings) as producer:
            await producer.send(events)  # published while the client is away
        return checkpoint, await _first_frames(edge, "/v1/streams/tenant", token, len(events), checkpoint.id)

    with running_edge(settings, log_dir) as edge:
        checkpoint, frames = asyncio.run(scenario(edge))
    assert checkpoint.data == "" and checkpoint.id is not None
    assert_exactly_the_log(frames, asyncio.run(read_log(settings, "acme")))


# -- 2. unknown and expired cursors -----------------------------------------------------------
async def _first_frames(
    edge: Edge,
    path: str,
    token: str,
    count: int,
    last_id: str | None = None,
    timeout: float = 20,
    checkpoints: bool = False,
) -> list[SseEvent]:
    stream = await RawStream("127.0.0.1", edge.port, path, token, last_id, checkpoints=checkpoints).open()
    got: list[SseEvent] = []

    async def read() -> None:
        async for frame in stream:
            if frame.event != "heartbeat":
                got.append(frame)
                if len(got) == count:
                    return

    try:
        await asyncio.wait_for(read(), timeout)
    finally:
        stream.close()
    return got


@pytest.mark.parametrize("cursor", ["garbage", "e9:1.d9:1", "e0:-1.e1:-1.e2:-1.e3:-1.e4:-1.e5:-1"])
def test_unknown_cursor_gets_an_explicit_reset_and_restarts_live(
    settings: Settings, log_dir: Path, tokens, cursor: str
) -> None:
    token = tokens("acme", "subscriber")
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    earlier, later = traffic(seed=3, conversations=1)[:2], traffic(seed=4, conversations=1)[:1]
    earlier = [e.__class__(**{**_fields(e), "subject": conv}) for e in earlier]
    later = [e.__class__(**{**_fields(e), "subject": conv}) for e in later]
    path = f"/v1/conversation/stream?conversation_id={conv}"

    async def scenario(edge: Edge) -> list[SseEvent]:
        watcher = asyncio.create_task(_first_frames(edge, path, token, len(earlier)))
        await asyncio.sleep(0.5)
        async with Producer(settings) as producer:
            await producer.send(earlier)  # before the reconnect: must not be replayed by a live restart
        await watcher  # the hub has read them
        stream = await RawStream("127.0.0.1", edge.port, path, token, cursor, checkpoints=True).open()
        got: list[SseEvent] = []
        try:

            async def read() -> None:
                async for frame in stream:
                    if frame.event == "heartbeat":
                        continue
                    got.append(frame)
                    if frame.event == "reset":
                        async with Producer(settings) as producer:
                            await producer.send(later)
                    if frame.data and frame.id is not None:
                        return

            await asyncio.wait_for(read(), 20)
        finally:
            stream.close()
        return got

    with running_edge(settings, log_dir) as edge:
        got = asyncio.run(scenario(edge))
    reset, checkpoint, data = got
    assert reset.event == "reset" and reset.id is None
    body = orjson.loads(reset.data)
    assert body["restart"] == "live" and "unknown cursor" in body["reason"]
    assert (checkpoint.data, checkpoint.id) == ("", body["cursor"]), (
        "an EventSource adopts the restart cursor"
    )
    restart = cursors.decode(body["cursor"])
    part = partition_for(conv, PARTITIONS)
    assert set(restart) == {("e", part), ("d", part)}
    assert restart[("e", part)] >= 1  # the restart point is after the records published before
    assert orjson.loads(data.data)["event_id"] == later[0].event_id


def test_a_cursor_of_another_conversation_on_the_same_partition_gets_a_reset_not_a_skip(
    settings: Settings, log_dir: Path, tokens
) -> None:
    """Before cursors named their stream, another conversation's cursor on the same partition was
    taken as positions: the stream resumed after them and this conversation's records below them
    were never sent, without a reset."""
    token = tokens("acme", "subscriber")
    mine = f"conv-{uuid.uuid4().hex[:8]}"
    part = partition_for(mine, PARTITIONS)
    theirs = next(
        c
        for c in (f"conv-{uuid.uuid4().hex[:8]}" for _ in range(1000))
        if partition_for(c, PARTITIONS) == part
    )
    events = [
        e.__class__(**{**_fields(e), "subject": mine, "tenant": "acme"})
        for e in traffic(seed=11, conversations=1)
        if e.type != "PolicyDecision"
    ]

    # Their stream's cursor, served up to past my records (theirs and mine share the partition).
    positions = {("e", part): len(events) - 1, ("d", part): -1}
    their_cursor = cursors.encode(positions, cursors.stream_tag(settings.topic_prefix, "acme", theirs))
    untagged = cursors.encode(positions)

    async def scenario(edge: Edge) -> tuple[list[SseEvent], list[SseEvent]]:
        async with Producer(settings) as producer:
            await producer.send(events)
        mine_path = f"/v1/conversation/stream?conversation_id={mine}"
        tagged = await _first_frames(edge, mine_path, token, 2, their_cursor, checkpoints=True)
        legacy = await _first_frames(edge, mine_path, token, 1, untagged, checkpoints=True)
        return tagged, legacy

    with running_edge(settings, log_dir) as edge:
        tagged, legacy = asyncio.run(scenario(edge))
    my_tag = cursors.stream_tag(settings.topic_prefix, "acme", mine)
    reset, checkpoint = tagged
    assert reset.event == "reset", [f.event for f in tagged]
    body = orjson.loads(reset.data)
    assert body["restart"] == "live" and "belongs to another stream" in body["reason"], body
    assert checkpoint.id == body["cursor"] and cursors.tag_of(body["cursor"]) == my_tag
    # A cursor without a tag (an edge before tags wrote it) is still taken as positions: no reset,
    # the stream starts from them (its first checkpoint is they, under this stream's tag).
    assert [(f.event, f.id) for f in legacy] == [("", f"{my_tag}.{untagged}")], legacy


def _fields(event: Event) -> dict:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


def test_cursor_older_than_retention_restarts_at_the_earliest_record_with_reset(
    settings: Settings, log_dir: Path, tokens
) -> None:
    token = tokens("acme", "subscriber")
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    events = [
        e.__class__(**{**_fields(e), "subject": conv, "tenant": "acme"})
        for e in traffic(seed=9, conversations=1)
        if e.type != "PolicyDecision"
    ]
    part = partition_for(conv, PARTITIONS)

    async def scenario(edge: Edge) -> list[SseEvent]:
        async with Producer(settings) as producer:
            await producer.send(events)
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:  # retention, provoked: the first three records are gone
            await admin.delete_records(
                {TopicPartition(settings.topic(CONVERSATION_EVENTS), part): RecordsToDelete(3)}
            )
        finally:
            await admin.close()
        cursor = cursors.encode({("e", part): 0, ("d", part): -1})  # served up to offset 0 only
        return await _first_frames(
            edge, f"/v1/conversation/stream?conversation_id={conv}", token, 1 + len(events) - 3, cursor
        )

    with running_edge(settings, log_dir) as edge:
        got = asyncio.run(scenario(edge))
    reset, *data = got
    assert reset.event == "reset" and reset.id is None
    body = orjson.loads(reset.data)
    assert body["restart"] == "earliest" and f"e{part}" in body["reason"]
    assert cursors.decode(body["cursor"])[("e", part)] == 2
    assert [orjson.loads(f.data)["event_id"] for f in data] == [e.event_id for e in events[3:]]


# -- 3. heartbeats, overflow, reauth ----------------------------------------------------------
def test_idle_stream_gets_heartbeats_without_ids(settings: Settings, log_dir: Path, tokens) -> None:
    token = tokens("acme", "subscriber")
    with running_edge(settings, log_dir, LEDGERFLOW_SSE_HEARTBEAT_S="0.2") as edge:

        async def scenario() -> tuple[list[SseEvent], float]:
            stream = await RawStream("127.0.0.1", edge.port, "/v1/streams/tenant", token).open()
            began, got = time.monotonic(), []
            try:
                async for frame in stream:
                    got.append(frame)
                    if len(got) == 5:
                        break
            finally:
                stream.close()
            return got, time.monotonic() - began

        frames, took = asyncio.run(scenario())
    assert [f.event for f in frames] == ["heartbeat"] * 5
    assert all(f.id is None for f in frames)
    assert 0.8 <= took < 3.0, f"5 heartbeats at 0.2 s took {took:.2f} s"


def test_subscriber_that_does_not_read_gets_overflow_and_resumes_without_gap(
    settings: Settings, log_dir: Path, tokens
) -> None:
    token = tokens("acme", "subscriber")
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    events = big_turns(conv, 1500)
    path = f"/v1/conversation/stream?conversation_id={conv}"

    async def scenario(edge: Edge) -> tuple[list[SseEvent], list[SseEvent]]:
        slow = await RawStream("127.0.0.1", edge.port, path, token, rcvbuf=4096, buffer_limit=4096).open()
        async with Producer(settings) as producer:
            await producer.send(events)  # the slow subscriber reads nothing meanwhile
        await asyncio.sleep(1.0)
        first: list[SseEvent] = []
        try:

            async def drain() -> None:
                async for frame in slow:
                    first.append(frame)

            await asyncio.wait_for(drain(), 30)  # the edge closes the stream after `overflow`
        finally:
            slow.close()
        data = [f for f in first if f.id is not None]
        rest = await _first_frames(edge, path, token, len(events) - len(data), data[-1].id)
        return first, rest

    with running_edge(settings, log_dir, LEDGERFLOW_SSE_QUEUE="10") as edge:
        first, rest = asyncio.run(scenario(edge))
    assert first[-1].event == "overflow" and first[-1].id is None
    data = [f for f in first if f.id is not None]
    assert 0 < len(data) < len(events)
    received = [orjson.loads(f.data)["event_id"] for f in data + rest]
    assert received == [e.event_id for e in events]


def test_stream_sends_reauth_before_exp_and_ends_at_exp(settings: Settings, log_dir: Path, tokens) -> None:
    with running_edge(
        settings, log_dir, LEDGERFLOW_SSE_REAUTH_BEFORE_S="2", LEDGERFLOW_SSE_HEARTBEAT_S="5"
    ) as edge:
        token = tokens("acme", "subscriber", ttl_seconds=5)
        exp = orjson.loads(_b64(token.split(".")[1]))["exp"]

        async def scenario() -> list[tuple[float, SseEvent]]:
            stream = await RawStream("127.0.0.1", edge.port, "/v1/streams/tenant", token).open()
            got = []
            try:

                async def read() -> None:
                    async for frame in stream:
                        got.append((time.time(), frame))

                await asyncio.wait_for(read(), 15)  # returns when the edge ends the stream
            finally:
                stream.close()
            return got

        got = [(t, f) for t, f in asyncio.run(scenario()) if f.event != "heartbeat"]
    assert [f.event for _, f in got] == ["reauth", "expired"]
    (reauth_at, reauth), (expired_at, expired) = got
    assert exp - 2.5 <= reauth_at < exp, (reauth_at, exp)
    assert orjson.loads(reauth.data)["expires_at"] == rfc3339_seconds(exp)  # RFC 3339, like every time
    assert exp <= expired_at < exp + 1.0, (expired_at, exp)
    assert reauth.id is None and expired.id is None


def _b64(part: str) -> bytes:
    import base64

    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_client_disconnects_free_their_subscriptions_at_once(
    settings: Settings, log_dir: Path, tokens
) -> None:
    token = tokens("acme", "subscriber")

    async def scenario(edge: Edge) -> tuple[int, float]:
        streams = [
            await RawStream("127.0.0.1", edge.port, path, token).open()
            for path in ["/v1/streams/tenant"] * 25 + ["/v1/conversation/stream?conversation_id=c1"] * 25
        ]
        async with httpx.AsyncClient(base_url=edge.base) as client:
            opened = (await client.get("/readyz")).json()["sse_subscribers"]
            for stream in streams:
                stream.close()
            began = time.monotonic()
            while (await client.get("/readyz")).json()["sse_subscribers"] and time.monotonic() - began < 5:
                await asyncio.sleep(0.02)
            return opened, time.monotonic() - began

    with running_edge(settings, log_dir, LEDGERFLOW_SSE_HEARTBEAT_S="30") as edge:
        opened, freed_in = asyncio.run(scenario(edge))
    assert opened == 50
    assert freed_in < 1.0, f"subscriptions were still held {freed_in:.2f} s after the clients left"


# -- 4. graceful shutdown ---------------------------------------------------------------------
def test_sigterm_ends_streams_with_retry_and_lets_in_flight_requests_finish(
    settings: Settings, log_dir: Path, tokens
) -> None:
    token = tokens("acme", "subscriber,producer")
    edge = Edge(settings, log_dir, {"LEDGERFLOW_SSE_HEARTBEAT_S": "30"}).start()
    body = orjson.dumps(
        {
            "type": "ConversationStarted",
            "subject": "c-shutdown",
            "payload": {"actor": "ana", "model": "slm-1"},
        }
    )

    async def scenario() -> tuple[list[list[SseEvent]], bytes, float]:
        streams = [
            await RawStream("127.0.0.1", edge.port, "/v1/streams/tenant", token).open() for _ in range(3)
        ]
        reader, writer = await asyncio.open_connection("127.0.0.1", edge.port)
        writer.write(
            f"POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body[:10]
        )
        await writer.drain()
        await asyncio.sleep(0.3)  # the request is in flight: headers and part of the body are in
        began = time.monotonic()
        assert edge.proc is not None
        edge.proc.popen.send_signal(signal.SIGTERM)

        async def frames(stream: RawStream) -> list[SseEvent]:
            return [f async for f in stream]

        ended = await asyncio.wait_for(asyncio.gather(*(frames(s) for s in streams)), 10)
        took = time.monotonic() - began
        writer.write(body[10:])
        response = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return ended, response, took

    try:
        ended, response, took = asyncio.run(scenario())
        code = edge.proc.popen.wait(15) if edge.proc else None
    finally:
        edge.stop()
    for frames in ended:
        assert [f.event for f in frames] == ["shutdown"]
        assert frames[0].retry is not None and frames[0].retry > 0 and frames[0].id is None
    assert took < 2.0, f"streams ended {took:.2f} s after SIGTERM (should be at once)"
    assert response.startswith(b"HTTP/1.1 202"), response[:200]
    assert code in (0, -signal.SIGTERM)


# -- 5. a thousand subscribers on one edge ------------------------------------------------------
SUBSCRIBERS = 1000


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_thousand_subscribers_on_one_edge_receive_every_event_in_order(
    settings: Settings, log_dir: Path, tokens
) -> None:
    events = traffic(seed=31, conversations=16, tenants=("acme",))
    token = tokens("acme", "subscriber")

    async def scenario(edge: Edge) -> tuple[list[list[SseEvent]], dict[Key, list[str]], dict[str, float]]:
        total = len(events)
        gate = asyncio.Semaphore(100)

        async def open_one() -> RawStream:
            async with gate:
                return await RawStream("127.0.0.1", edge.port, "/v1/streams/tenant", token).open()

        began = time.monotonic()
        streams = await asyncio.gather(*(open_one() for _ in range(SUBSCRIBERS)))
        connected = time.monotonic() - began
        received: list[list[SseEvent]] = [[] for _ in streams]
        done_at: list[float] = [0.0] * len(streams)

        async def read(i: int, stream: RawStream) -> None:
            async for frame in stream:
                if frame.id is not None:
                    received[i].append(frame)
                    if len(received[i]) == total:
                        done_at[i] = time.monotonic()
                        return

        assert edge.proc is not None
        cpu_before = _cpu_seconds(edge.proc.popen.pid)
        readers = [asyncio.create_task(read(i, s)) for i, s in enumerate(streams)]
        published = time.monotonic()
        async with Producer(settings) as producer:
            await producer.send(events)
        publish_s = time.monotonic() - published
        _, pending = await asyncio.wait(readers, timeout=60)
        for task in pending:
            task.cancel()
        numbers = {
            "subscribers": len(streams),
            "events": total,
            "connect_s": connected,
            "publish_s": publish_s,
            "all_delivered_s": max(done_at) - published if not pending else float("inf"),
            "edge_cpu_s": _cpu_seconds(edge.proc.popen.pid) - cpu_before,
        }
        for stream in streams:
            stream.close()
        return received, await read_log(settings, "acme"), numbers

    with running_edge(settings, log_dir, LEDGERFLOW_SSE_HEARTBEAT_S="5") as edge:
        received, log, numbers = asyncio.run(scenario(edge))
    print("\n1000-subscriber fan-out:", {k: round(v, 2) for k, v in numbers.items()})
    complete = sum(len(r) == numbers["events"] for r in received)
    assert complete == SUBSCRIBERS, f"{SUBSCRIBERS - complete} subscribers missed events: {numbers}"
    for frames in received:
        assert_exactly_the_log(frames, log)
