"""Producers: publish typed events to ledgerflow, straight to Kafka or through the edge.

    async with AsyncProducer("kafka://127.0.0.1:19092", tenant="acme") as producer:
        where = await producer.publish(MessageSubmitted("t1", "user", "hello", "slm-1"), subject="c1")

The URL picks the transport: ``kafka://host:port[,host:port]`` writes with aiokafka (acks=all,
idempotent) to ``<topic_prefix><topic>``; ``http(s)://edge`` posts to ``/v1/events`` with a
token (conversation event types only). Either way the event is keyed by its subject and
single-object Avro framed exactly as ledgerflow's own writers do, and the answer is its
position. ``Producer`` is the same with blocking calls.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Protocol, TypedDict, Unpack

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ledgerflow.client.edge_http import EdgeHttp, TokenSource, resolve_token, token_tenant
from ledgerflow.client.framing import edge_body, kafka_record
from ledgerflow.client.records import Published
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import Payload
from ledgerflow.errors import InfrastructureError, ValidationError

DEFAULT_PRODUCER = "ledgerflow-client"


class ProducerOptions(TypedDict, total=False):
    """``token``: for the edge (a string or a callback); ``tenant``: default for events (a kafka://
    producer needs it; through the edge it defaults to the token's); ``topic_prefix``: kafka:// only;
    ``producer``: the envelope's ``producer`` (the edge sets its own)."""

    token: TokenSource | None
    tenant: str | None
    topic_prefix: str
    producer: str


class EventOptions(TypedDict, total=False):
    """Envelope fields a caller may set; ``event_id`` and ``occurred_at_micros`` default to new ones."""

    tenant: str | None
    event_id: str | None
    occurred_at_micros: int | None
    trace_id: str | None


class Transport(Protocol):
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def send(self, events: Sequence[Event]) -> list[Published]: ...
    async def default_tenant(self) -> str | None: ...


class KafkaTransport:
    def __init__(self, bootstrap: str, topic_prefix: str) -> None:
        self.bootstrap, self.topic_prefix = bootstrap, topic_prefix
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True, linger_ms=2
        )
        try:
            await producer.start()
        except KafkaError as exc:
            await producer.stop()
            raise InfrastructureError(f"Kafka at {self.bootstrap} did not answer: {exc}") from exc
        self._producer = producer

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, events: Sequence[Event]) -> list[Published]:
        if self._producer is None:
            raise InfrastructureError("the producer is not started: use `async with` or await start()")
        records = [kafka_record(e, self.topic_prefix) for e in events]  # encode all before sending any
        try:
            pending = [await self._producer.send(r.topic, value=r.value, key=r.key) for r in records]
            metas = await asyncio.gather(*pending)
        except KafkaError as exc:
            raise InfrastructureError(f"publishing to Kafka at {self.bootstrap} failed: {exc}") from exc
        return [
            Published(e.event_id, m.topic, m.partition, m.offset) for e, m in zip(events, metas, strict=True)
        ]

    async def default_tenant(self) -> str | None:
        return None


class EdgeTransport:
    def __init__(self, base_url: str, token: TokenSource, client: httpx.AsyncClient | None) -> None:
        self.http = EdgeHttp(base_url, token, client=client)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.http.aclose()

    async def send(self, events: Sequence[Event]) -> list[Published]:
        bodies = [edge_body(e) for e in events]  # refuse a batch with a type the edge does not take
        out = []
        for body in bodies:  # one at a time: the edge acknowledges each event once it is in Kafka
            resp = await self.http.request("POST", "/v1/events", "publishing an event", json=body)
            ack = resp.json()
            out.append(
                Published(ack["event_id"], ack["topic"], ack["partition"], ack["offset"], ack["duplicate"])
            )
        return out

    async def default_tenant(self) -> str | None:
        return token_tenant(await resolve_token(self.http.token))


def transport_for(
    url: str, *, token: TokenSource | None, topic_prefix: str, client: httpx.AsyncClient | None
) -> Transport:
    """``kafka://`` → Kafka, ``http(s)://`` → the edge (which needs a token)."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme == "kafka" and rest.strip("/"):
        return KafkaTransport(rest.strip("/"), topic_prefix)
    if sep and scheme in ("http", "https") and rest:
        if token is None:
            raise ValidationError(f"token: publishing through the edge ({url}) needs a token (producer role)")
        if topic_prefix:
            raise ValidationError("topic_prefix: the edge has its own; set it only for kafka:// producers")
        return EdgeTransport(url, token, client)
    raise ValidationError(f"url: {url!r} is neither kafka://host:port nor http(s)://edge-address")


class AsyncProducer:
    """Publishes events and answers their positions (module doc). Use as ``async with``."""

    def __init__(
        self, url: str, *, http_client: httpx.AsyncClient | None = None, **options: Unpack[ProducerOptions]
    ) -> None:
        self.url = url
        self.tenant = options.get("tenant")
        self.producer = options.get("producer", DEFAULT_PRODUCER)
        self._transport = transport_for(
            url, token=options.get("token"), topic_prefix=options.get("topic_prefix", ""), client=http_client
        )

    async def start(self) -> None:
        await self._transport.start()

    async def close(self) -> None:
        await self._transport.close()

    async def __aenter__(self) -> AsyncProducer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def event(self, payload: Payload, *, subject: str, **options: Unpack[EventOptions]) -> Event:
        """The validated event for ``payload`` (its type is the payload's class), newest schema version.

        The event id is drawn here, so publishing the same event again is recognised as a retry.
        """
        tenant = options.get("tenant") or self.tenant or await self._transport.default_tenant()
        if tenant is None:
            raise ValidationError("tenant: a kafka:// producer needs tenant= (here or when it is created)")
        occurred_at = options.get("occurred_at_micros")
        return new_event(
            type(payload).__name__,
            tenant=tenant,
            subject=subject,
            payload=payload,
            producer=self.producer,
            occurred_at_micros=time.time_ns() // 1000 if occurred_at is None else occurred_at,
            event_id=options.get("event_id"),
            trace_id=options.get("trace_id"),
        )

    async def publish(self, payload: Payload, *, subject: str, **options: Unpack[EventOptions]) -> Published:
        """Publish one payload as an event about ``subject`` (a conversation id, or a tenant for commands)."""
        event = await self.event(payload, subject=subject, **options)
        return (await self._transport.send([event]))[0]

    async def publish_events(self, events: Iterable[Event]) -> list[Published]:
        """Publish built events (``event()``, or decoded ones); positions in the same order."""
        return await self._transport.send(list(events))
