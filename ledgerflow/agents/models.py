"""The models agent: the single writer of each tenant's model registry.

The training agent's pattern (``agents/training.py``), without timers: commands from
``models.commands`` partition *p* are decided into ``models.audit`` partition *p*. On
first use of a partition after (re)assignment, its output is folded from the start (one
record per change) into every tenant's registry and chain head, and the last input offset
answered (``lf-input``) is learnt; redelivered commands at or below it are skipped, and
commands the consumer group passed unanswered are read back and decided first. Each
command is decided by the pure ``ledgerflow.models.decide``; its event is appended
hash-chained per tenant. A command id answered lately in the partition is a duplicate
delivery (not decided again); a command that does not decode, or whose decision raises,
is dead-lettered. A failed batch forgets its partitions' state, recovered from the log.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from ledgerflow.agents.deadletters import DeadLetterSink, dead_letter_of
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
from ledgerflow.contracts.inputs import decode_input
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.errors import DecodeError
from ledgerflow.models import ModelRegistry, decide, evolve, initial_registry
from ledgerflow.models.wire import command_of, event_of, record_of
from ledgerflow.policy.wire import chain, head_after
from ledgerflow.topics import MODELS_AUDIT, MODELS_COMMANDS

log = logging.getLogger(__name__)

NAME = "models"
BATCH, WITHIN_S, IDLE_TICK_S = 100, 0.01, 60.0
DEDUPE_WINDOW = 10_000  # per partition: the latest answered command ids a redelivery is matched against


@dataclass
class Registries:
    """One owned partition: each tenant's registry and chain head, and what was answered."""

    tenants: dict[str, ModelRegistry] = field(default_factory=dict)
    heads: dict[str, ChainHead] = field(default_factory=dict)
    answered: OrderedDict[str, int] = field(default_factory=OrderedDict)  # command id -> input offset
    last_input: int = -1

    def of(self, tenant: str) -> ModelRegistry:
        return self.tenants.get(tenant) or initial_registry(tenant)

    def answer(self, command_id: str, offset: int) -> None:
        self.last_input = max(self.last_input, offset)
        if not command_id:  # nothing to match a redelivery against: remembering "" would drop the next one
            return
        self.answered[command_id] = offset
        while len(self.answered) > DEDUPE_WINDOW:
            self.answered.popitem(last=False)


class ModelsAgent(PartitionOwner[Registries]):
    """I/O through ports (``agents/ports.py``), so its decisions are unit-tested in memory."""

    def __init__(
        self,
        settings: Settings,
        output: OutputLog,
        inputs: InputLog,
        sink: DeadLetterPort,
        clock: Callable[[], int] = wall_clock_micros,
    ) -> None:
        self.input_topic = settings.topic(MODELS_COMMANDS)
        self._output, self._inputs, self._sink, self._clock = output, inputs, sink, clock
        super().__init__()
        self._started = False

    async def tick(self) -> None:
        """Nothing happens by time alone in a registry."""

    async def _recover(self, p: int) -> Registries:
        known = Registries()
        async for written in self._output.read(p):
            try:
                record = codec.decode(written.value, allowed_types=TOPIC_TYPES[MODELS_AUDIT])
            except DecodeError:
                log.error("models: undecodable audit record at offset %d ignored", written.offset)
                continue
            known.tenants[record.tenant] = evolve(known.of(record.tenant), event_of(record))
            if record.sequence and record.hash:
                known.heads[record.tenant] = ChainHead(record.tenant, record.sequence, record.hash)
            command_id = getattr(record.payload, "command_id", "")
            if written.input_offset is not None:
                known.answer(command_id, written.input_offset)
        self._partitions[p] = known
        return known

    async def handle(self, messages: Sequence[Any]) -> None:
        async with self._lock:
            if not self._started:
                await self._output.start()
                self._started = True
            pending: list[Any] = []
            for p in sorted({m.partition for m in messages} - set(self._partitions)):
                known = await self._recover(p)
                first = min(m.offset for m in messages if m.partition == p)
                pending += await self._inputs.read(p, known.last_input + 1, first)
            out: list[Outgoing] = []
            letters: list[DeadLetter] = []
            for msg in [*pending, *messages]:
                out += self._decide(msg, self._partitions[msg.partition], letters)
            await self._sink.send_all(letters)
            await self._output.write(out)

    def _decide(self, msg: Any, known: Registries, letters: list[DeadLetter]) -> list[Outgoing]:
        if msg.offset <= known.last_input:
            return []
        try:
            event = decode_input(msg.value, msg.key, MODELS_COMMANDS)
        except DecodeError as exc:
            letters.append(dead_letter_of(msg, exc.reason, NAME, MODELS_COMMANDS))
            return []
        command_id = str(getattr(event.payload, "command_id", ""))
        if command_id in known.answered:
            log.warning(
                "models: command %s delivered again at offset %d; not decided again", command_id, msg.offset
            )
            return []
        try:
            command = command_of(event)
            outcome = decide(known.of(command.tenant), command, self._clock())
        except Exception as exc:  # a command that cannot be decided must not stop the partition
            log.exception("models: deciding %s[%d]@%d failed", msg.topic, msg.partition, msg.offset)
            letters.append(dead_letter_of(msg, evaluation_failed(exc), NAME, MODELS_COMMANDS))
            return []
        out = []
        for change in outcome:
            known.tenants[change.tenant] = evolve(known.of(change.tenant), change)
            record = chain(record_of(change, trace_id=event.trace_id), known.heads.get(change.tenant))
            known.heads[change.tenant] = head_after(record)
            out.append(Outgoing(msg.partition, msg.offset, change.tenant.encode(), codec.encode(record)))
        known.answer(command_id, msg.offset)
        return out


def register(app: faust.App, settings: Settings) -> ModelsAgent:
    commands = settings.topic(MODELS_COMMANDS)
    output = CoPartitionedOutput(settings, commands, settings.topic(MODELS_AUDIT))
    agent = ModelsAgent(settings, output, KafkaInputLog(settings, commands), DeadLetterSink(app, NAME))
    register_timed(app, agent, name=NAME, batch=BATCH, within=WITHIN_S, tick_s=IDLE_TICK_S)
    return agent
