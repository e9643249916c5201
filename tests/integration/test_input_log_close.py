"""The agents' input logs stop their end-offsets consumer when the worker stops, on the real broker.

Each ``KafkaInputLog`` (the policy, training, models and usage agents' input read back by range)
asks end offsets on one consumer kept for the purpose. Nothing stopped it: the agents have no stop
of their own, so it stayed open until the process ended (``Unclosed AIOKafkaConsumer`` in worker
logs at shutdown). Now faust's ``App.on_stop`` (what a stopping worker runs) closes it, and a
question asked afterwards is refused instead of opening another.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import faust
import pytest

from ledgerflow.agents import models, policy, training, usage
from ledgerflow.agents.app import create_app
from ledgerflow.agents.batchloop import BatchLoop, KafkaSource
from ledgerflow.agents.snapshots import KafkaInputLog
from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError


def _policy(app: faust.App, settings: Settings) -> object:
    return policy.Ports.connect(app, settings, prove=BatchLoop(KafkaSource(settings), []).prove).inputs


OWNERS: dict[str, Callable[[faust.App, Settings], object]] = {
    "policy": _policy,
    "training": lambda app, settings: training.Ports.connect(app, settings).inputs,
    "models": lambda app, settings: models.register(app, settings)._inputs,
    "usage": lambda app, settings: usage.Ports.connect(app, settings).inputs,
}


@pytest.mark.parametrize("owner", list(OWNERS))
def test_the_end_offsets_consumer_is_stopped_when_the_worker_stops(settings: Settings, owner: str) -> None:
    async def scenario() -> None:
        app = create_app(settings, app_id=f"ledgerflow-input-log-{owner}")
        inputs = OWNERS[owner](app, settings)
        assert isinstance(inputs, KafkaInputLog)
        assert await inputs.end(0) == 0  # a fresh topic: starts the consumer
        consumer = inputs._ends
        assert consumer is not None and not consumer._closed
        await app.on_stop()  # what faust runs when the worker stops
        assert consumer._closed, "the end-offsets consumer outlived the worker's stop"
        with pytest.raises(InfrastructureError, match="closed"):
            await inputs.end(0)
        assert inputs._ends is None

    asyncio.run(scenario())
