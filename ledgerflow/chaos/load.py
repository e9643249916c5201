"""The steady, bounded load: conversations through the edges and straight to Kafka, steps, and
training commands, paced to a fixed number of records per second in all. Every answer is
judged (answers.py); every acknowledged record is remembered with where the log put it.

A request is never retried with the same event id once it may have reached the edge: the
checks then expect an acknowledged record exactly once on the log and an unacknowledged one
at most once. A request refused before it was sent (the edge process is down) goes to the
other edge.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from ledgerflow.chaos.answers import judge
from ledgerflow.chaos.environment import Environment
from ledgerflow.chaos.report import Tally
from ledgerflow.chaos.services import Service
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import DisableTraining, EnableTraining
from ledgerflow.topics import CONVERSATION_EVENTS, TRAINING_COMMANDS
from ledgerflow.traffic import Mix, script

TENANTS = ("acme", "globex", "initech", "umbrella")
CLIENT_TIMEOUT_S = 30.0  # far above every documented bound (5 s per dependency call, 2 s step wait)
KAFKA_TIMEOUT_S = 120.0
EDGE_FIELDS = ("event_id", "type", "schema_version", "subject", "occurred_at", "payload")


@dataclass(frozen=True, slots=True)
class Ack:
    """An acknowledged record: ``key`` is its event id, or a training command's command id."""

    path: str
    key: str
    tenant: str
    subject: str
    partition: int | None
    offset: int | None


class Pacer:
    """Hands out send slots at ``rate`` per second across every driver (no catch-up bursts)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.next = time.monotonic()

    async def take(self) -> None:
        now = time.monotonic()
        self.next = max(self.next + self.interval, now - 1.0)
        if self.next > now:
            await asyncio.sleep(self.next - now)


@dataclass
class Ledger:
    tally: Tally = field(default_factory=Tally)
    acks: list[Ack] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)  # undocumented answers: discrepancies

    def submitted(self, path: str) -> None:
        self.tally.submitted[path] += 1

    def acked(self, ack: Ack) -> None:
        self.tally.acknowledged[ack.path] += 1
        self.acks.append(ack)

    def error(self, label: str, bad: str | None = None) -> None:
        self.tally.errors[label] += 1
        if bad is not None:
            self.bad.append(bad)


def edge_body(event: Event) -> dict[str, Any]:
    """What a gateway posts to ``/v1/events``: the event without producer, tenant or chain fields."""
    full = event.to_json()
    return {k: full[k] for k in EDGE_FIELDS}


class EdgeClient:
    """Requests to whichever edge runs, judged and tallied."""

    def __init__(self, env: Environment, ledger: Ledger) -> None:
        self.env, self.ledger = env, ledger
        self.http = httpx.AsyncClient(timeout=CLIENT_TIMEOUT_S, limits=httpx.Limits(max_connections=200))
        self.turn = 0

    def pick(self) -> Service | None:
        live = self.env.live_edges()
        if not live:
            return None
        self.turn += 1
        return live[self.turn % len(live)]

    async def call(
        self,
        path: str,
        method: str,
        url: str,
        token: str,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> httpx.Response | None:
        """The answer (judged and counted), or None when there was none to count as acknowledged."""
        self.ledger.submitted(path)
        for _ in range(20):
            edge = self.pick()
            if edge is None:
                await asyncio.sleep(0.5)
                continue
            epoch = edge.epoch
            began = time.monotonic()
            try:
                resp = await self.http.request(
                    method,
                    f"{edge.http}{url}",
                    json=body,
                    headers={"Authorization": f"Bearer {token}", **(headers or {})},
                )
            except httpx.ConnectError:
                self.ledger.error("connect-refused")  # nothing was sent: the other edge
                await asyncio.sleep(0.2)
                continue
            except httpx.TimeoutException:
                self.ledger.error(
                    "timeout", f"{path}: no answer from {edge.name} within {CLIENT_TIMEOUT_S:.0f} s"
                )
                return None
            except httpx.TransportError as exc:
                if edge.epoch != epoch or not edge.alive():
                    self.ledger.error("connection-lost-edge-killed")
                else:
                    self.ledger.error(
                        "connection-lost", f"{path}: {edge.name} dropped the connection: {exc!r}"
                    )
                return None
            verdict = judge(
                path, resp.status_code, resp.headers.get("content-type", ""), resp.headers.get("retry-after")
            )
            if not verdict.ok:
                took = time.monotonic() - began
                detail = resp.text[:200].replace("\n", " ")
                bad = (
                    None
                    if verdict.documented
                    else f"{path}: HTTP {resp.status_code} after {took:.1f} s: {detail}"
                )
                self.ledger.error(verdict.label, bad)
                return None
            if verdict.label != "200" and verdict.label != "202":
                self.ledger.error(verdict.label)
            return resp
        self.ledger.error("no-edge-running")
        return None


class Load:
    def __init__(self, env: Environment, rate: float, seed: int, run_id: str) -> None:
        self.env = env
        self.ledger = Ledger()
        self.pacer = Pacer(rate)
        self.rng = random.Random(seed)
        self.run_id = run_id
        self.stopping = asyncio.Event()
        self.edge = EdgeClient(env, self.ledger)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=env.settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=5
        )
        self.tokens = {t: env.token(t, "producer,subscriber,admin") for t in TENANTS}
        self.serial = 0

    def conversation_id(self, kind: str) -> str:
        self.serial += 1
        return f"{kind}-{self.run_id}-{self.serial}"

    async def start(self) -> None:
        await self.producer.start()

    async def close(self) -> None:
        await self.producer.stop()
        await self.edge.http.aclose()

    def events(self, tenant: str, conversation: str) -> list[Event]:
        return script(
            self.rng,
            tenant,
            conversation,
            time.time_ns() // 1000,
            turns=self.rng.randint(1, 4),
            producer="chaos",
        )

    async def post_event(self, event: Event) -> Ack | None:
        await self.pacer.take()
        resp = await self.edge.call(
            "edge-events", "POST", "/v1/events", self.tokens[event.tenant], edge_body(event)
        )
        if resp is None:
            return None
        body = resp.json()
        ack = Ack(
            "edge-events", body["event_id"], event.tenant, event.subject, body["partition"], body["offset"]
        )
        self.ledger.acked(ack)
        return ack

    async def send_kafka(self, path: str, topic: str, event: Event, key: str) -> None:
        await self.pacer.take()
        self.ledger.submitted(path)
        try:
            meta = await asyncio.wait_for(
                self.producer.send_and_wait(
                    self.env.settings.topic(topic), codec.encode(event), key=event.subject.encode()
                ),
                KAFKA_TIMEOUT_S,
            )
        except Exception as exc:  # any failure is counted: the record is then unacknowledged
            self.ledger.error(f"kafka:{type(exc).__name__}")
            return
        self.ledger.acked(Ack(path, key, event.tenant, event.subject, meta.partition, meta.offset))

    async def edge_conversations(self) -> None:
        while not self.stopping.is_set():
            tenant = self.rng.choice(TENANTS)
            for event in self.events(tenant, self.conversation_id("e")):
                await self.post_event(event)

    async def kafka_conversations(self) -> None:
        while not self.stopping.is_set():
            tenant = self.rng.choice(TENANTS)
            for event in self.events(tenant, self.conversation_id("k")):
                await self.send_kafka("kafka-events", CONVERSATION_EVENTS, event, event.event_id)

    async def steps(self) -> None:
        mix = Mix()
        while not self.stopping.is_set():
            tenant, conversation = self.rng.choice(TENANTS), self.conversation_id("s")
            for _ in range(self.rng.randint(1, 3)):
                await self.pacer.take()
                body = {"conversation_id": conversation, "content": mix.pick(self.rng), "model": "slm-1"}
                key = {"Idempotency-Key": str(uuid.uuid4())}
                resp = await self.edge.call(
                    "step", "POST", "/v1/conversation/step?wait=2", self.tokens[tenant], body, key
                )
                if resp is not None:
                    got = resp.json()
                    partition, _, offset = str(got.get("consistency_token") or ":").partition(":")
                    where = (int(partition), int(offset)) if offset else (None, None)
                    self.ledger.acked(Ack("step", got["event_id"], tenant, conversation, *where))

    async def training(self, every_s: float = 4.0) -> None:
        """Training commands, alternately through the edge and straight to Kafka."""
        n = 0
        while not self.stopping.is_set():
            n += 1
            tenant = self.rng.choice(TENANTS)
            enable = self.rng.random() < 0.5
            if n % 2:
                await self.pacer.take()
                url = "/v1/training/enable?wait=2" if enable else "/v1/training/disable?wait=2"
                body: dict[str, Any] = {"reason": "chaos drill"} | ({"ttl_seconds": 600} if enable else {})
                resp = await self.edge.call("training-edge", "POST", url, self.tokens[tenant], body)
                if resp is not None:
                    self.ledger.acked(
                        Ack("training-edge", resp.json()["command_id"], tenant, tenant, None, None)
                    )
            else:
                command_id = str(uuid.uuid4())
                kind, payload = (
                    ("EnableTraining", EnableTraining(command_id, "chaos", "chaos drill", 600))
                    if enable
                    else ("DisableTraining", DisableTraining(command_id, "chaos", "chaos drill"))
                )
                event = new_event(
                    kind,
                    tenant=tenant,
                    subject=tenant,
                    payload=payload,
                    producer="chaos-admin",
                    occurred_at_micros=time.time_ns() // 1000,
                )
                await self.send_kafka("training-kafka", TRAINING_COMMANDS, event, command_id)
            await asyncio.sleep(every_s)

    def tasks(self, edge: int, kafka: int, steps: int) -> list[Callable[[], Any]]:
        return (
            [self.edge_conversations] * edge
            + [self.kafka_conversations] * kafka
            + [self.steps] * steps
            + [self.training]
        )
