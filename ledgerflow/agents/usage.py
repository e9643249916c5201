"""The usage agent: token usage per tenant, model and event-time window.

Windows are folded per input partition of ``conversation.events`` (pure
``ledgerflow.usage``); closed windows and corrections go to ``usage.windows``, hash-chained
per tenant. Output records are keyed by tenant, so unlike the policy agent this agent
cannot rely on co-partitioning: it recognises what it already wrote by derived event id.

Recovery of input partition *p* (first batch after assignment):
1. Read ``usage.windows`` in full: the ids already written, each tenant's chain head.
2. Re-fold input partition *p* from its start up to the first offset faust delivers,
   emitting nothing that was already written (ids from step 1).
Then live records fold and emit as usual; a timer advances idle partitions' watermarks
by the wall clock so their windows close too. Re-folding is O(partition size): fine at
demo scale, documented in docs/usage.md as the place to add snapshots.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaProducer

from ledgerflow.agents.ownership import register_timed
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import Event, check_key
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.decisions import chain, head_after
from ledgerflow.errors import DecodeError
from ledgerflow.logs import read_range, read_topic
from ledgerflow.metrics import USAGE_WINDOW_LAG, USAGE_WINDOWS_EMITTED
from ledgerflow.topics import CONVERSATION_EVENTS, USAGE_WINDOWS
from ledgerflow.usage.windows import UsageState, WindowConfig, add, advance
from ledgerflow.usage.wire import record_of

log = logging.getLogger(__name__)

NAME = "usage"
TICK_S = 1.0
BATCH = 500
WITHIN_S = 0.05


class UsageAgent:
    def __init__(self, settings: Settings, config: WindowConfig | None = None) -> None:
        self._settings = settings
        self.input_topic = settings.topic(CONVERSATION_EVENTS)
        self.output_topic = settings.topic(USAGE_WINDOWS)
        self._config = config or WindowConfig()
        self._states: dict[int, UsageState] = {}
        self._written: set[str] | None = None
        self._heads: dict[str, ChainHead] = {}
        self._lock = asyncio.Lock()
        self._producer: AIOKafkaProducer | None = None

    def use_lock(self, lock: asyncio.Lock) -> None:
        """Share the ownership lock: batches, ticks and rebalances never interleave."""
        self._lock = lock

    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self._states.pop(p, None)
        self._written = None  # another worker may have written since: re-read on next use

    async def _load_written(self) -> None:
        """Step 1."""
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                bootstrap_servers=self._settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=5,
            )
            await self._producer.start()
        written: set[str] = set()
        async for raw in read_topic(self._settings, self.output_topic):
            try:
                record = codec.decode(raw.value or b"", allowed_types=TOPIC_TYPES[USAGE_WINDOWS])
            except DecodeError:
                continue
            written.add(record.event_id)
            if record.sequence and record.hash:
                self._heads[record.tenant] = ChainHead(record.tenant, record.sequence, record.hash)
        self._written = written

    async def _refold(self, p: int, until: int) -> UsageState:
        """Step 2: fold input partition ``p`` below ``until`` (emitting only what is missing)."""
        state = UsageState(config=self._config)
        out: list[Event] = []
        for rec in await read_range(self._settings, self.input_topic, p, 0, until):
            state, emitted = self._fold(state, p, rec.value, rec.key)
            out += emitted
        await self._send(out)
        return state

    def _fold(
        self, state: UsageState, p: int, value: bytes | None, key: bytes | None
    ) -> tuple[UsageState, list[Event]]:
        try:
            event = codec.decode(value or b"", allowed_types=TOPIC_TYPES[CONVERSATION_EVENTS])
            check_key(event, key)
        except DecodeError:
            return state, []  # the policy agent dead-letters poison records of this topic
        payload = event.payload
        if not isinstance(payload, MessageSubmitted):
            return state, []
        state, emitted = add(
            state,
            event.tenant,
            payload.model,
            event.occurred_at,
            payload.tokens,
            len(payload.content.encode()),
        )
        return state, [self._record(e, p, event.occurred_at) for e in emitted]

    def _record(self, emitted: Any, p: int, occurred_at: int) -> Event:
        return record_of(emitted, p, occurred_at)

    async def _send(self, records: list[Event]) -> None:
        """Chain and produce records not written before; wait for the acks."""
        assert self._producer is not None and self._written is not None
        futures = []
        for record in records:
            if record.event_id in self._written:
                continue
            chained = chain(record, self._heads.get(record.tenant))
            self._heads[record.tenant] = head_after(chained)
            self._written.add(record.event_id)
            futures.append(
                await self._producer.send(
                    self.output_topic, codec.encode(chained), key=record.tenant.encode()
                )
            )
            USAGE_WINDOWS_EMITTED.labels("correction" if record.payload.correction else "closed").inc()  # type: ignore[union-attr]
        if futures:
            await asyncio.gather(*futures)

    async def handle(self, messages: Sequence[Any]) -> None:
        async with self._lock:
            if self._written is None:
                await self._load_written()
            out: list[Event] = []
            for msg in messages:
                state = self._states.get(msg.partition)
                if state is None:
                    state = self._states[msg.partition] = await self._refold(msg.partition, msg.offset)
                state, emitted = self._fold(state, msg.partition, msg.value, msg.key)
                self._states[msg.partition] = state
                out += emitted
            await self._send(out)

    async def tick(self) -> None:
        """Close windows of idle partitions: watermark = wall clock − lateness."""
        async with self._lock:
            if self._written is None:
                return
            now = time.time_ns() // 1000
            out: list[Event] = []
            for p, state in list(self._states.items()):
                if state.watermark is not None:
                    USAGE_WINDOW_LAG.labels(str(p)).set((now - state.watermark) / 1e6)
                state, emitted = advance(state, now - self._config.lateness_micros)
                self._states[p] = state
                out += [self._record(e, p, now) for e in emitted]
            await self._send(out)


def window_config_from_env() -> WindowConfig:
    """``LEDGERFLOW_USAGE_WINDOW_S`` (default 60) and ``LEDGERFLOW_USAGE_LATENESS_S`` (default 10)."""
    size = float(os.environ.get("LEDGERFLOW_USAGE_WINDOW_S", "60"))
    lateness = float(os.environ.get("LEDGERFLOW_USAGE_LATENESS_S", "10"))
    return WindowConfig(size_micros=int(size * 1e6), lateness_micros=int(lateness * 1e6))


def register(app: faust.App, settings: Settings) -> UsageAgent:
    agent_state = UsageAgent(settings, window_config_from_env())
    register_timed(app, agent_state, name=NAME, batch=BATCH, within=WITHIN_S, tick_s=TICK_S)
    return agent_state
