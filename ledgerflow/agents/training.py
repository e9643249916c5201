"""The training agent: the single writer of each tenant's training lock.

Commands from ``training.commands`` partition *p* are decided into ``training.audit``
partition *p* (co-partitioned, see ``agents/output.py``). Per partition:
1. On first use after (re)assignment, read output partition *p* from the start (it is
   small: one record per transition), folding every tenant's state and chain head and
   learning the last input offset already answered.
2. Skip redelivered commands at or below that offset; read back and decide first any
   command between it and the first offset faust delivers (the group's committed offset
   can be past commands this agent never saw, e.g. when it joins an existing group).
3. Decide each command with the pure ``training.decide`` against the folded state;
   append its events (accepted, rejected, or an expiry found on the way) hash-chained
   per tenant, and wait for the acks. A command whose ``command_id`` was answered in this
   partition lately (the last ``DEDUPE_WINDOW`` answers) is a duplicate delivery: not
   decided again. A command that does not decode or validate, or
   whose decision raises, is dead-lettered (``contracts/deadletters.py``) and the rest go on.
   If the batch fails (Kafka down), its partitions' state is forgotten and recovered from
   the log before the retry (``agents/app.py: handle_until_done``): the in-memory state
   never runs ahead of what the broker acknowledged.
A timer appends ``TrainingExpired`` for every owned tenant whose TTL elapsed.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from ledgerflow.agents.deadletters import DeadLetterSink, dead_letter_of
from ledgerflow.agents.layout import Guard
from ledgerflow.agents.output import CoPartitionedOutput, Outgoing
from ledgerflow.agents.ownership import register_timed
from ledgerflow.agents.partitioned import PartitionOwner
from ledgerflow.agents.ports import DeadLetterPort, InputLog, OutputLog, wall_clock_micros
from ledgerflow.agents.snapshots import KafkaInputLog
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.deadletters import evaluation_failed
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.inputs import decode_input
from ledgerflow.errors import DecodeError
from ledgerflow.metrics import TRAINING_DUPLICATES, TRAINING_OUTCOMES, TRAINING_STATE
from ledgerflow.policy.wire import chain, head_after
from ledgerflow.topics import TRAINING_AUDIT, TRAINING_COMMANDS
from ledgerflow.training import TrainingEvent, TrainingState, decide, evolve, expire_due, initial_state
from ledgerflow.training.wire import command_of, event_of, record_of

log = logging.getLogger(__name__)

NAME = "training"
TICK_S = 0.2
BATCH = 100
WITHIN_S = 0.01


DEDUPE_WINDOW = 10_000
"""Per partition: command ids of the latest answers a duplicate delivery is recognised against."""


@dataclass
class PartitionState:
    last_input: int = -1
    tenants: dict[str, TrainingState] = field(default_factory=dict)
    heads: dict[str, ChainHead] = field(default_factory=dict)
    answered: OrderedDict[str, int] = field(default_factory=OrderedDict)  # command id -> input offset

    def state(self, tenant: str) -> TrainingState:
        return self.tenants.get(tenant) or initial_state(tenant)

    def remember(self, command_id: str, offset: int) -> None:
        self.answered[command_id] = offset
        self.answered.move_to_end(command_id)
        while len(self.answered) > DEDUPE_WINDOW:
            self.answered.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Ports:
    """Everything the training agent reads and writes (see ``agents/ports.py``)."""

    output: OutputLog  # training.audit, co-partitioned with training.commands
    inputs: InputLog  # training.commands read back by range
    sink: DeadLetterPort

    @classmethod
    def connect(cls, app: faust.App, settings: Settings) -> Ports:
        """The Kafka adapters of a worker."""
        commands = settings.topic(TRAINING_COMMANDS)
        return cls(
            output=CoPartitionedOutput(settings, commands, settings.topic(TRAINING_AUDIT)),
            inputs=KafkaInputLog(settings, commands),
            sink=DeadLetterSink(app, NAME),
        )


class TrainingAgent(PartitionOwner[PartitionState]):
    def __init__(
        self, settings: Settings, ports: Ports, clock: Callable[[], int] = wall_clock_micros
    ) -> None:
        self.input_topic = settings.topic(TRAINING_COMMANDS)
        self._output = ports.output
        self._inputs = ports.inputs
        self._sink = ports.sink
        self._clock = clock
        super().__init__()
        self._started = False

    async def _ensure_started(self) -> None:
        if not self._started:
            await self._output.start()
            self._started = True

    async def _partition(self, p: int) -> PartitionState:
        state = self._partitions.get(p)
        if state is None:  # Step 1.
            state = PartitionState()
            async for written in self._output.read(p):
                try:
                    record = codec.decode(written.value, allowed_types=TOPIC_TYPES[TRAINING_AUDIT])
                except DecodeError:
                    log.error("training: undecodable audit record at offset %d ignored", written.offset)
                    continue
                state.tenants[record.tenant] = evolve(state.state(record.tenant), event_of(record))
                if record.sequence and record.hash:
                    state.heads[record.tenant] = ChainHead(record.tenant, record.sequence, record.hash)
                if written.input_offset is not None:
                    state.last_input = max(state.last_input, written.input_offset)
                    command_id = getattr(record.payload, "command_id", None)
                    if command_id:
                        state.remember(command_id, written.input_offset)
            self._partitions[p] = state
        return state

    async def handle(self, messages: Sequence[Any]) -> None:
        async with self._lock:
            await self._ensure_started()
            out: list[Outgoing] = []
            letters = []
            backfill: list[Any] = []
            for p in {m.partition for m in messages}:
                if p not in self._partitions:  # commands the group passed unanswered come first
                    state = await self._partition(p)
                    first = min(m.offset for m in messages if m.partition == p)
                    start = state.last_input + 1
                    backfill += await self._inputs.read(p, start, first)
            for msg in [*backfill, *messages]:
                state = await self._partition(msg.partition)
                if msg.offset <= state.last_input:  # Step 2.
                    continue
                try:
                    event = decode_input(msg.value, msg.key, TRAINING_COMMANDS)
                except DecodeError as exc:
                    letters.append(dead_letter_of(msg, exc.reason, NAME, TRAINING_COMMANDS))
                    continue
                first = state.answered.get(_command_id(event))
                if first is not None:
                    log.warning(
                        "training: %s[%d]@%d repeats command %s answered at input offset %d: duplicate "
                        "delivery, not decided again",
                        msg.topic,
                        msg.partition,
                        msg.offset,
                        _command_id(event),
                        first,
                    )
                    TRAINING_DUPLICATES.inc()
                    continue
                try:
                    command = command_of(event)
                    events = decide(state.state(command.tenant), command, self._clock())  # Step 3.
                    appended = self._append(state, msg.partition, msg.offset, events, event.trace_id)
                except Exception as exc:  # a command that cannot be decided must not stop the partition
                    log.exception("training: deciding %s[%d]@%d failed", msg.topic, msg.partition, msg.offset)
                    letters.append(dead_letter_of(msg, evaluation_failed(exc), NAME, TRAINING_COMMANDS))
                    continue
                out += appended
                state.last_input = msg.offset
                if appended and command.command_id:
                    state.remember(command.command_id, msg.offset)
            await self._sink.send_all(letters)
            await self._output.write(out)

    async def tick(self) -> None:
        """Append ``TrainingExpired`` for owned tenants whose lock is overdue."""
        async with self._lock:
            if not self._started:
                return
            now = self._clock()
            out: list[Outgoing] = []
            for p, state in list(self._partitions.items()):
                for tenant in list(state.tenants):
                    due = expire_due(state.state(tenant), now)
                    if due:
                        out += self._append(state, p, None, due, None)
            await self._output.write(out)

    def _append(
        self,
        state: PartitionState,
        p: int,
        input_offset: int | None,
        events: list[TrainingEvent],
        trace_id: str | None,
    ) -> list[Outgoing]:
        out = []
        for event in events:
            state.tenants[event.tenant] = evolve(state.state(event.tenant), event)
            record = chain(record_of(event, trace_id=trace_id), state.heads.get(event.tenant))
            state.heads[event.tenant] = head_after(record)
            out.append(Outgoing(p, input_offset, event.tenant.encode(), codec.encode(record)))
            TRAINING_OUTCOMES.labels(record.type).inc()
            TRAINING_STATE.labels(event.tenant).set(1 if state.tenants[event.tenant].enabled else 0)
        return out


def _command_id(event: Event) -> str:
    return str(getattr(event.payload, "command_id", "") or "")


def register(app: faust.App, settings: Settings, guard: Guard | None = None) -> TrainingAgent:
    agent_state = TrainingAgent(settings, Ports.connect(app, settings))
    register_timed(app, agent_state, name=NAME, batch=BATCH, within=WITHIN_S, tick_s=TICK_S, guard=guard)
    return agent_state
