"""The training agent: the single writer of each tenant's training lock.

The command-agent pattern of ``agents/commanded.py`` (recovery from ``training.audit``,
redelivered and passed commands, duplicate command ids, dead letters, hash-chained outcomes
per tenant), with ``training.decide`` as the decision, plus a timer: every ``TICK_S`` it
appends ``TrainingExpired`` for every owned tenant whose TTL elapsed. Outcomes and the
enabled state are counted in the worker's metrics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import faust

from ledgerflow.agents.app import input_log
from ledgerflow.agents.commanded import Aggregate, CommandAgent, Partition
from ledgerflow.agents.deadletters import KafkaDeadLetterLog
from ledgerflow.agents.layout import PartitionGuard
from ledgerflow.agents.output import CoPartitionedOutput, Outgoing
from ledgerflow.agents.ownership import register_timed
from ledgerflow.agents.ports import DeadLetterLog, InputLog, OutputLog, wall_clock_micros
from ledgerflow.agents.shutdown import close_at_shutdown
from ledgerflow.config import Settings
from ledgerflow.contracts.events import Event
from ledgerflow.metrics import TRAINING_DUPLICATES, TRAINING_OUTCOMES, TRAINING_STATE
from ledgerflow.topics import TRAINING_AUDIT, TRAINING_COMMANDS
from ledgerflow.training import TrainingEvent, TrainingState, decide, evolve, expire_due, initial_state
from ledgerflow.training.records import TrainingCommand
from ledgerflow.training.wire import command_of, event_of, record_of
from ledgerflow.versioned import stamp

NAME = "training"
TICK_S = 1.0
"""A lock expires within this of its deadline. The first tick after an assignment also recovers
every owned partition from the log (claims, end offsets, reads): at 0.2 s that overran the
interval on a loaded 2-core machine and faust warned of overlapping timers."""
BATCH = 100
WITHIN_S = 0.01

TRAINING: Aggregate[TrainingState, TrainingCommand, TrainingEvent] = Aggregate(
    NAME, TRAINING_COMMANDS, TRAINING_AUDIT, initial_state, decide, evolve, command_of, record_of, event_of
)


@dataclass(frozen=True, slots=True)
class Ports:
    """Everything the training agent reads and writes (see ``agents/ports.py``)."""

    output: OutputLog  # training.audit, co-partitioned with training.commands
    inputs: InputLog  # training.commands read back by range
    sink: DeadLetterLog

    @classmethod
    def connect(cls, app: faust.App, settings: Settings) -> Ports:
        """The Kafka adapters of a worker, closed when it stops."""
        commands = settings.topic(TRAINING_COMMANDS)
        output = CoPartitionedOutput(settings, commands, settings.topic(TRAINING_AUDIT))
        close_at_shutdown(app, NAME, output.close)
        return cls(
            output=output,
            inputs=input_log(app, settings, commands),
            sink=KafkaDeadLetterLog(app, settings, NAME),
        )


class TrainingAgent(CommandAgent[TrainingState, TrainingCommand, TrainingEvent]):
    def __init__(
        self, settings: Settings, ports: Ports, clock: Callable[[], int] = wall_clock_micros
    ) -> None:
        topic = settings.topic(TRAINING_COMMANDS)
        super().__init__(TRAINING, topic, ports.output, ports.inputs, ports.sink, clock)

    async def tick(self, assigned: AbstractSet[int] = frozenset()) -> None:
        """Append ``TrainingExpired`` for owned tenants whose lock is overdue, in every partition
        this worker owns: one no command has reached since a restart or a rebalance is recovered
        from its log first (``recover_idle``), or its locks would outlive their TTL until the
        next command."""
        async with self._lock:
            self._unreported = []  # what a failed attempt appended was never written
            if assigned:
                await self.recover_idle(assigned)
            if not self._started:
                return
            now = self._clock()
            out: list[Outgoing] = []
            for p, known in list(self._partitions.items()):
                for tenant in list(known.tenants):
                    # stamped as commands are (versioned.stamp), without their warning at every tick
                    due = expire_due(known.state(tenant), stamp(now, known.stamps.get(tenant)))
                    if due:
                        out += self._append(known, p, None, due, None)
            await self._write(out)

    async def _recover(self, p: int, held: int = 0) -> Partition[TrainingState]:
        """Recover ``p`` and export its tenants' state (``ledgerflow_training_mode_enabled``): a new
        owner's gauge says what the log says, not only after each tenant's next command."""
        known = await super()._recover(p, held)
        for tenant, state in known.tenants.items():
            TRAINING_STATE.labels(tenant).set(1 if state.enabled else 0)
        return known

    def revoke(self, partitions: set[int]) -> None:
        """Forget ``partitions`` and stop exporting their tenants' state: their next owner exports it
        (a series left here would stay at what it was, after the lock expired there)."""
        for p in partitions:
            known = self._partitions.get(p)
            for tenant in () if known is None else known.tenants:
                with contextlib.suppress(KeyError):  # never exported (a tenant only rejected, say)
                    TRAINING_STATE.remove(tenant)
        super().revoke(partitions)

    def _duplicate(self, msg: Any, command_id: str, first: int) -> None:
        super()._duplicate(msg, command_id, first)
        TRAINING_DUPLICATES.inc()

    def _appended(self, record: Event, state: TrainingState) -> None:
        TRAINING_OUTCOMES.labels(record.type).inc()
        TRAINING_STATE.labels(record.tenant).set(1 if state.enabled else 0)


def register(app: faust.App, settings: Settings, guard: PartitionGuard | None = None) -> TrainingAgent:
    agent_state = TrainingAgent(settings, Ports.connect(app, settings))
    agent_state.guard = guard
    register_timed(app, agent_state, name=NAME, batch=BATCH, within=WITHIN_S, tick_s=TICK_S)
    return agent_state
