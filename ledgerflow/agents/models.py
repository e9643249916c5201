"""The models agent: the single writer of each tenant's model registry.

The command-agent pattern of ``agents/commanded.py`` (recovery from ``models.audit``,
redelivered and passed commands, duplicate command ids, dead letters, hash-chained outcomes
per tenant), with ``ledgerflow.models.decide`` as the decision; nothing happens by time alone.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet

import faust

from ledgerflow.agents.app import input_log
from ledgerflow.agents.commanded import Aggregate, CommandAgent
from ledgerflow.agents.deadletters import KafkaDeadLetterLog
from ledgerflow.agents.layout import PartitionGuard
from ledgerflow.agents.output import CoPartitionedOutput
from ledgerflow.agents.ownership import register_timed
from ledgerflow.agents.ports import DeadLetterLog, InputLog, OutputLog, wall_clock_micros
from ledgerflow.agents.shutdown import close_at_shutdown
from ledgerflow.config import Settings
from ledgerflow.models import ModelRegistry, decide, evolve, initial_registry
from ledgerflow.models.records import ModelCommand, ModelEvent
from ledgerflow.models.wire import command_of, event_of, record_of
from ledgerflow.topics import MODELS_AUDIT, MODELS_COMMANDS

NAME = "models"
BATCH, WITHIN_S, IDLE_TICK_S = 100, 0.01, 60.0

MODELS: Aggregate[ModelRegistry, ModelCommand, ModelEvent] = Aggregate(
    NAME, MODELS_COMMANDS, MODELS_AUDIT, initial_registry, decide, evolve, command_of, record_of, event_of
)


class ModelsAgent(CommandAgent[ModelRegistry, ModelCommand, ModelEvent]):
    def __init__(
        self,
        settings: Settings,
        output: OutputLog,
        inputs: InputLog,
        sink: DeadLetterLog,
        clock: Callable[[], int] = wall_clock_micros,
    ) -> None:
        super().__init__(MODELS, settings.topic(MODELS_COMMANDS), output, inputs, sink, clock)

    async def tick(self, assigned: AbstractSet[int] = frozenset()) -> None:
        """Nothing happens by time alone in a registry."""


def register(app: faust.App, settings: Settings, guard: PartitionGuard | None = None) -> ModelsAgent:
    commands = settings.topic(MODELS_COMMANDS)
    output = CoPartitionedOutput(settings, commands, settings.topic(MODELS_AUDIT))
    close_at_shutdown(app, NAME, output.close)
    agent = ModelsAgent(
        settings, output, input_log(app, settings, commands), KafkaDeadLetterLog(app, settings, NAME)
    )
    agent.guard = guard
    register_timed(app, agent, name=NAME, batch=BATCH, within=WITHIN_S, tick_s=IDLE_TICK_S)
    return agent
