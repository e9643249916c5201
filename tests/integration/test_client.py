"""ledgerflow.client against the real stack: producers in Kafka and edge mode, the subscriber's
resume across a dropped connection (an edge restart) and its reauth, the step helper's
idempotency. Every event is checked on the log itself, not only in the client's answers."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ledgerflow.client import (
    AsyncProducer,
    Decisions,
    Notice,
    Producer,
    Published,
    Received,
    StepResult,
    Subscriber,
    TokenSource,
)
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import (
    ConversationStarted,
    EnableTraining,
    MessageSubmitted,
    PolicyDecision,
)
from ledgerflow.errors import AuthError, InfrastructureError, ValidationError
from ledgerflow.kafka.logs import read_all
from tests.support.processes import Process, free_port, start, wait_http_ready

Tokens = Callable[..., str]


def turn(n: int) -> MessageSubmitted:
    return MessageSubmitted(f"t{n}", "user", f"turn {n}", "slm-1")


def on_log(settings: Settings, topic: str) -> dict[tuple[int, int], tuple[bytes | None, bytes | None]]:
    return {
        (r.partition, r.offset): (r.key, r.value)
        for r in asyncio.run(read_all(settings, settings.topic(topic)))
    }


def test_async_kafka_producer_keys_frames_and_answers_the_positions(settings: Settings) -> None:
    conv = f"c-{uuid.uuid4().hex[:8]}"

    async def go() -> tuple[list[Published], list[Event]]:
        url = f"kafka://{settings.kafka_bootstrap}"
        async with AsyncProducer(url, tenant="acme", topic_prefix=settings.topic_prefix, producer="app") as p:
            first = await p.publish(ConversationStarted("bo", "slm-1"), subject=conv)
            events = [await p.event(turn(n), subject=conv) for n in range(3)]
            command = await p.publish(EnableTraining("cmd-1", "bo", "eval"), subject="acme")
            return [first, *await p.publish_events(events), command], events

    positions, events = asyncio.run(go())
    log = on_log(settings, "conversation.events")
    assert len(log) == 4
    decoded = []
    for where in positions[:4]:
        assert where.topic == settings.topic("conversation.events")
        key, value = log[(where.partition, where.offset)]
        assert key == conv.encode() and value is not None
        event = codec.decode(value)
        assert event.event_id == where.event_id and event.producer == "app" and event.tenant == "acme"
        decoded.append(event)
    assert decoded[1:] == events
    assert len({p.partition for p in positions[:4]}) == 1  # one conversation, one partition, in order
    assert [p.offset for p in positions[:4]] == sorted(p.offset for p in positions[:4])
    training = on_log(settings, "training.commands")
    cmd = positions[4]
    assert cmd.topic == settings.topic("training.commands")
    assert training[(cmd.partition, cmd.offset)][0] == b"acme"


def test_sync_edge_producer_publishes_through_the_edge_and_a_retry_is_recognised(
    settings: Settings, edge: str, tokens: Tokens
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    conv = f"c-{uuid.uuid4().hex[:8]}"
    with Producer(edge, token=tokens(tenant, "producer")) as producer:
        started = producer.publish(ConversationStarted("bo", "slm-1"), subject=conv)
        event = producer.event(turn(1), subject=conv)
        first, again = producer.publish_events([event]), producer.publish_events([event])
        # Case: a type the edge does not ingest is refused before any request.
        with pytest.raises(ValidationError, match="cannot be published through the edge"):
            producer.publish(EnableTraining("cmd-1", "bo", "x"), subject=tenant)
        # Case: another tenant than the token's is refused by the edge (403), not silently rewritten.
        with pytest.raises(AuthError, match="403"):
            producer.publish(turn(2), subject=conv, tenant="someone-else")
    assert not first[0].duplicate and again[0].duplicate
    assert (again[0].partition, again[0].offset) == (first[0].partition, first[0].offset)
    log = on_log(settings, "conversation.events")
    assert len(log) == 2  # the retry published nothing
    on_edge = codec.decode(log[(first[0].partition, first[0].offset)][1] or b"")
    assert on_edge.event_id == event.event_id and on_edge.payload == event.payload
    assert on_edge.producer == "edge:test" and on_edge.tenant == tenant  # the edge attributes it
    assert codec.decode(log[(started.partition, started.offset)][1] or b"").type == "ConversationStarted"


def test_producers_refuse_what_they_cannot_publish(settings: Settings) -> None:
    url = f"kafka://{settings.kafka_bootstrap}"
    with pytest.raises(ValidationError, match="needs tenant="), Producer(url) as producer:
        producer.publish(turn(1), subject="c1")
    with (
        pytest.raises(ValidationError, match="'system' is not in list"),
        Producer(url, tenant="a") as producer,
    ):
        producer.publish(MessageSubmitted("t1", "system", "x", "m"), subject="c1")  # type: ignore[arg-type]
    assert on_log(settings, "conversation.events") == {}


def kafka_producer(settings: Settings, tenant: str) -> AsyncProducer:
    return AsyncProducer(
        f"kafka://{settings.kafka_bootstrap}", tenant=tenant, topic_prefix=settings.topic_prefix
    )


def start_edge(settings: Settings, log_dir: Path, http: str, **env: str) -> Process:
    proc = start(settings.with_overrides(http=http), "edge", "serve", log_dir=log_dir, extra_env=env)
    wait_http_ready(proc, f"http://{http}")
    return proc


def test_subscriber_gets_typed_events_and_resumes_across_an_edge_restart_with_no_gap_or_duplicate(
    settings: Settings, worker: Process, log_dir: Path, tokens: Tokens
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    conv = f"c-{uuid.uuid4().hex[:8]}"
    http = f"127.0.0.1:{free_port()}"
    edge = start_edge(settings, log_dir, http)
    notices: list[Notice] = []

    async def go() -> tuple[list[Received], int]:
        got: list[Received] = []
        async with (
            kafka_producer(settings, tenant) as producer,
            Subscriber(
                f"http://{http}",
                lambda: tokens(tenant, "subscriber"),
                conversation_id=conv,
                on_notice=notices.append,
            ) as sub,
        ):
            stream = sub.events()
            nonlocal edge
            reader = asyncio.create_task(collect(stream, got, 1))
            await asyncio.wait_for(sub.open.wait(), 10)  # the stream starts live: publish once it is open
            await producer.publish(ConversationStarted("bo", "slm-1"), subject=conv)
            await asyncio.wait_for(reader, 30)
            assert isinstance(got.pop().event.payload, ConversationStarted)
            for n in range(3):
                await producer.publish(turn(n), subject=conv)
            await asyncio.wait_for(until_decided(stream, got, 3), 30)
            await asyncio.to_thread(edge.stop)  # the connection drops; turns go on while no edge runs
            for n in range(3, 6):
                await producer.publish(turn(n), subject=conv)
            edge = await asyncio.to_thread(start_edge, settings, log_dir, http)
            await asyncio.wait_for(until_decided(stream, got, 6), 30)
            await stream.aclose()
            return got, sub.connections

    try:
        got, connections = asyncio.run(go())
    finally:
        edge.stop()
    assert connections >= 2
    turns = [r.event.payload.turn_id for r in got if isinstance(r.event.payload, MessageSubmitted)]
    decided = [r.event.payload.input_event_id for r in got if isinstance(r.event.payload, PolicyDecision)]
    assert turns == [f"t{n}" for n in range(6)]  # every turn once, in order, across the drop
    submitted = {r.event.event_id for r in got if isinstance(r.event.payload, MessageSubmitted)}
    assert sorted(decided) == sorted(submitted) and len(decided) == 6
    assert all(isinstance(r.event.payload, MessageSubmitted | PolicyDecision) for r in got)
    assert all(r.event.tenant == tenant for r in got)
    assert len({r.cursor for r in got}) == len(got)


def test_subscriber_switches_to_a_fresh_token_on_reauth_and_after_a_401(
    settings: Settings, log_dir: Path, tokens: Tokens
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    http = f"127.0.0.1:{free_port()}"
    proc = start_edge(settings, log_dir, http, LEDGERFLOW_SSE_REAUTH_BEFORE_S="2")
    issued: list[str] = []

    def token() -> str:
        # First a token of another deployment's shape (refused: 401), then 4-second tokens.
        issued.append(
            "bad.eyJ0ZW5hbnQiOiJ4In0.sig" if not issued else tokens(tenant, "subscriber", ttl_seconds=4)
        )
        return issued[-1]

    notices: list[Notice] = []

    async def go() -> tuple[list[Received], int]:
        got: list[Received] = []
        async with (
            kafka_producer(settings, tenant) as producer,
            Subscriber(f"http://{http}", token, on_notice=notices.append) as sub,
        ):
            stream = sub.events()
            reader = asyncio.create_task(collect(stream, got, 16))
            await asyncio.wait_for(sub.open.wait(), 10)  # the stream starts live: publish once it is open
            for n in range(16):  # 8 s: two token lifetimes
                await producer.publish(turn(n), subject=f"c{n % 3}")
                await asyncio.sleep(0.5)
            await asyncio.wait_for(reader, 30)
            await stream.aclose()
            return got, sub.connections

    try:
        got, connections = asyncio.run(go())
    finally:
        proc.stop()
    assert [r.event.payload.turn_id for r in got] == [f"t{n}" for n in range(16)]  # type: ignore[union-attr]
    kinds = [n.kind for n in notices]
    assert "reauth" in kinds and "expired" not in kinds  # switched before the token ran out
    assert connections >= 3 and len(issued) >= 4  # the 401, then a new token per reauth


async def collect(stream, got: list[Received], count: int) -> None:  # type: ignore[no-untyped-def]
    while len(got) < count:
        got.append(await anext(stream))


async def until_decided(stream, got: list[Received], turns: int) -> None:  # type: ignore[no-untyped-def]
    """Until ``turns`` turns of the stream and their decisions arrived (decisions may come first)."""

    def count(kind: type) -> int:
        return sum(isinstance(r.event.payload, kind) for r in got)

    while min(count(MessageSubmitted), count(PolicyDecision)) < turns:
        got.append(await anext(stream))


def test_subscriber_gives_up_when_the_callback_keeps_giving_refused_tokens(edge: str) -> None:
    calls = []

    def token() -> str:
        calls.append(1)
        return "bad.eyJ0ZW5hbnQiOiJ4In0.sig"

    async def go(source: TokenSource) -> None:
        async with Subscriber(edge, source) as sub:
            async for _ in sub:
                pass

    with pytest.raises(AuthError, match=r"refused the stream's token \(3 in a row; "):
        asyncio.run(asyncio.wait_for(go(token), 20))
    assert len(calls) == 3
    with pytest.raises(AuthError, match=r"\(1 in a row; .*HTTP 401") as fixed:  # a fixed token: at once
        asyncio.run(asyncio.wait_for(go("bad.eyJ0ZW5hbnQiOiJ4In0.sig"), 20))
    assert "bad.eyJ0" not in str(fixed.value)  # the token is never echoed


def test_step_with_an_idempotency_key_publishes_once_and_answers_the_same_decision(
    settings: Settings, worker: Process, edge: str, tokens: Tokens
) -> None:
    tenant = f"t{uuid.uuid4().hex[:8]}"
    conv = f"c-{uuid.uuid4().hex[:8]}"

    async def go() -> list[StepResult]:
        async with Decisions(edge, lambda: tokens(tenant, "producer")) as decisions:
            first = await decisions.step(conv, "card 4111 1111 1111 1111", wait_s=20)
            again = await decisions.step(
                conv, "card 4111 1111 1111 1111", idempotency_key=first.idempotency_key
            )
            other = await decisions.step(conv, "hello", wait_s=20)
            with pytest.raises(ValidationError, match="422"):
                await decisions.step(conv, "something else", idempotency_key=first.idempotency_key)
            return [first, again, other]

    first, again, other = asyncio.run(go())
    assert first.decision is not None and first.decision.outcome == "redact" and first.decision.redactions
    assert again.event_id == first.event_id and again.decision == first.decision
    assert other.event_id != first.event_id and other.idempotency_key != first.idempotency_key
    assert other.decision is not None and other.decision.outcome == "allow"
    turns = [codec.decode(v or b"") for _, v in on_log(settings, "conversation.events").values()]
    assert sorted(e.event_id for e in turns) == sorted(
        [first.event_id, other.event_id]
    )  # the retry published nothing


def test_an_edge_that_does_not_answer_is_an_infrastructure_error_after_bounded_retries() -> None:
    down = f"http://127.0.0.1:{free_port()}"
    refused = pytest.raises(InfrastructureError, match=f"the edge at {down} did not answer")
    with Producer(down, token="a.eyJ0ZW5hbnQiOiJhY21lIn0.c") as producer, refused:
        producer.publish(turn(1), subject="c1")
