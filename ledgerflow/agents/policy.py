"""The policy agent: one chained decision per ``MessageSubmitted``, exactly once.

Input partition *p* of ``conversation.events`` is decided into partition *p* of
``policy.decisions`` (same key, same partition count), and only the worker that owns
input partition *p* writes output partition *p*. So output partition *p* is a complete,
ordered account of how far input partition *p* has been decided, and recovery needs no
transaction:

1. On the first batch of a partition after (re)assignment, load the chain-head snapshot
   from Redis (a cache: empty after a flush) and read output partition *p* from the
   snapshot's offset to its end. That rolls every conversation's chain head forward and
   yields the input offset of the last decision written (header ``lf-input``).
2. Skip input records at or below that offset: they were decided before a crash or a
   rebalance and are being redelivered. Records between it and the first offset faust
   delivers (the group's committed offset — e.g. when the policy agent joins a group whose
   other agents already consumed the topic) are read back and decided first: no turn is
   ever left without a decision.
3. Wait until reference data (rule packs, training state) has read everything in its
   log, then decide each turn with the pure ``ledgerflow.decisions.decide``.
4. Produce the decisions to partition *p* with an idempotent producer and wait for acks.
5. At most once a second, save the chain heads and offsets touched since the last save
   to Redis (one MULTI). The snapshot is only a shortcut for step 1: an older one means
   a longer roll-forward, never a wrong one.
6. Return: faust acks the batch and commits its offsets.
A crash between 4 and 6 is repaired by 1 and 2 on redelivery.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import faust
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ledgerflow.agents.app import raw_topic, run_batches
from ledgerflow.agents.deadletters import DeadLetterSink, dead_letter_of
from ledgerflow.agents.output import CoPartitionedOutput, Outgoing
from ledgerflow.agents.ownership import Ownership
from ledgerflow.agents.reference import ReferenceData
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import check_key
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.decisions import decide, head_after
from ledgerflow.errors import DecodeError
from ledgerflow.kafka_admin import committed_offsets
from ledgerflow.logs import read_range
from ledgerflow.metrics import DECISION_LATENCY, DECISIONS, RECORDS_PROCESSED
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS

log = logging.getLogger(__name__)

NAME = "policy"
BATCH = 500
WITHIN_S = 0.02
SNAPSHOT_EVERY_S = 1.0
CATCH_UP_S = 2.0


@dataclass
class PartitionState:
    """What the agent knows about one input partition it owns."""

    last_input: int = -1  # highest input offset already decided
    out_offset: int = -1  # highest output offset covered by ``heads``
    heads: dict[str, ChainHead] = field(default_factory=dict)


class PolicyAgent:
    def __init__(self, app: faust.App, settings: Settings, owns_dlq: bool = True) -> None:
        self._settings = settings
        self.input_topic = settings.topic(CONVERSATION_EVENTS)
        self.output_topic = settings.topic(POLICY_DECISIONS)
        self._sink = DeadLetterSink(app, NAME) if owns_dlq else None
        self._reference = ReferenceData(settings)
        self._partitions: dict[int, PartitionState] = {}
        self._started = False
        self._dirty: dict[int, set[str]] = {}
        self._saved_at = 0.0
        self._redis: aioredis.Redis | None = None
        self._output = CoPartitionedOutput(settings, self.input_topic, self.output_topic)

    def snapshot_key(self, partition: int) -> str:
        return f"lf:{self._settings.topic_prefix}policy:heads:{{p{partition}}}"

    async def _start(self) -> None:
        self._redis = aioredis.Redis.from_url(self._settings.redis_url, socket_timeout=10)
        await self._output.start()
        await self._reference.start()
        self._started = True

    @property
    def recovered(self) -> set[int]:
        return set(self._partitions)

    async def catch_up(self, committed: dict[int, int], assigned: set[int]) -> None:
        """Decide what lies below the group's committed offset in owned partitions that no
        batch has reached yet (see step 2; a partition without new traffic gets no batch)."""
        if not self._started:
            await self._start()
        records: list[Any] = []
        for p in sorted(assigned - set(self._partitions)):
            self._partitions[p] = state = await self._recover(p)
            records += await read_range(
                self._settings, self.input_topic, p, state.last_input + 1, committed.get(p, 0)
            )
        if records:
            log.warning("policy: deciding %d records the consumer group had already passed", len(records))
            await self.handle(records)

    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self._partitions.pop(p, None)
            self._dirty.pop(p, None)

    async def handle(self, messages: Sequence[Any]) -> None:
        if not self._started:
            await self._start()
        began = time.perf_counter()
        backfill: list[Any] = []
        for p in {m.partition for m in messages}:  # Step 1.
            if p not in self._partitions:
                self._partitions[p] = state = await self._recover(p)
                first = min(m.offset for m in messages if m.partition == p)
                backfill += await read_range(self._settings, self.input_topic, p, state.last_input + 1, first)
        if backfill:
            log.warning("policy: deciding %d records the consumer group had already passed", len(backfill))
            messages = [*backfill, *messages]
        states = {p: self._partitions[p] for p in {m.partition for m in messages}}
        await self._reference.sync()  # Step 3.
        out: list[Outgoing] = []
        letters = []
        touched: dict[int, set[str]] = {}
        for msg in messages:
            state = states[msg.partition]
            if msg.offset <= state.last_input:  # Step 2.
                continue
            RECORDS_PROCESSED.labels(NAME, CONVERSATION_EVENTS).inc()
            try:
                event = codec.decode(msg.value or b"", allowed_types=TOPIC_TYPES[CONVERSATION_EVENTS])
                check_key(event, msg.key)
            except DecodeError as exc:
                if self._sink is not None:
                    letters.append(dead_letter_of(msg, exc.reason, NAME, CONVERSATION_EVENTS))
                continue
            record = decide(
                event,
                msg.value,
                self._reference.pack_for(event.tenant),
                self._reference.training_for(event.tenant),
                state.heads.get(event.subject),
            )
            if record is None:
                continue
            state.heads[event.subject] = head_after(record)
            state.last_input = msg.offset
            touched.setdefault(msg.partition, set()).add(event.subject)
            out.append(Outgoing(msg.partition, msg.offset, event.subject.encode(), codec.encode(record)))
            DECISIONS.labels(record.payload.outcome).inc()  # type: ignore[union-attr]
        if self._sink is not None:
            await self._sink.send_all(letters)
        for record, offset in zip(out, await self._output.write(out), strict=True):  # Step 4.
            states[record.partition].out_offset = max(states[record.partition].out_offset, offset)
        for p, subjects in touched.items():
            self._dirty.setdefault(p, set()).update(subjects)
        if time.monotonic() - self._saved_at >= SNAPSHOT_EVERY_S:  # Step 5.
            owned = {p: s for p, s in self._dirty.items() if p in self._partitions}
            await self._save(owned, self._partitions)
            self._dirty = {}
            self._saved_at = time.monotonic()
        if out:
            DECISION_LATENCY.observe((time.perf_counter() - began) / len(out))

    async def _save(self, touched: dict[int, set[str]], states: dict[int, PartitionState]) -> None:
        assert self._redis is not None
        if not touched:
            return
        pipe = self._redis.pipeline(transaction=True)
        for p, subjects in touched.items():
            state = states[p]
            mapping = {s: f"{state.heads[s].sequence}|{state.heads[s].hash}" for s in subjects}
            mapping["__in"] = str(state.last_input)
            mapping["__out"] = str(state.out_offset)
            pipe.hset(self.snapshot_key(p), mapping=mapping)
        delay = 0.2
        while True:
            try:
                await pipe.execute()
                return
            except (RedisError, OSError) as exc:  # a cache: retry, never lose the decision
                log.warning("policy: saving chain heads failed (%r); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _recover(self, p: int) -> PartitionState:
        """Step 1: chain heads and decided input offset of partition ``p`` from Redis + the log."""
        assert self._redis is not None
        state = PartitionState()
        try:
            cached = await self._redis.hgetall(self.snapshot_key(p))
        except (RedisError, OSError):
            cached = {}
        for k, v in cached.items():
            name, text = k.decode(), v.decode()
            if name == "__in":
                state.last_input = int(text)
            elif name == "__out":
                state.out_offset = int(text)
            else:
                seq, _, digest = text.partition("|")
                state.heads[name] = ChainHead(name, int(seq), digest)
        if state.out_offset >= await self._output.end(p):  # the log lost what the cache remembers
            state = PartitionState()
        replayed = 0
        async for written in self._output.read(p, state.out_offset + 1):
            replayed += 1
            state.out_offset = written.offset
            try:
                decision = codec.decode(written.value, allowed_types=TOPIC_TYPES[POLICY_DECISIONS])
            except DecodeError:
                log.error(
                    "policy: undecodable record in %s[%d]@%d ignored", self.output_topic, p, written.offset
                )
                continue
            if isinstance(decision.payload, PolicyDecision) and decision.sequence and decision.hash:
                state.heads[decision.subject] = ChainHead(decision.subject, decision.sequence, decision.hash)
            if written.input_offset is not None:
                state.last_input = max(state.last_input, written.input_offset)
        log.info(
            "policy: partition %d recovered (%d decisions replayed, last input %d)",
            p,
            replayed,
            state.last_input,
        )
        return state


def register(app: faust.App, settings: Settings, owns_dlq: bool = True) -> PolicyAgent:
    agent_state = PolicyAgent(app, settings, owns_dlq)

    ownership = Ownership(agent_state.input_topic)
    ownership.connect(app, agent_state.revoke)

    @app.agent(raw_topic(app, agent_state.input_topic), name=NAME, concurrency=1)
    async def policy(stream: faust.StreamT) -> None:
        async def owned(messages: list[Any]) -> None:
            async with ownership.lock:
                if mine := ownership.owned(messages):
                    await agent_state.handle(mine)

        await run_batches(stream, BATCH, WITHIN_S, owned)

    @app.timer(interval=CATCH_UP_S)
    async def catch_up() -> None:
        if not ownership.assigned - agent_state.recovered:
            return
        committed = await committed_offsets(settings, app.conf.id, agent_state.input_topic)
        async with ownership.lock:
            await agent_state.catch_up(committed, ownership.assigned)

    return agent_state
