"""The agents' output logs and the policy agent's reference data stop their Kafka clients when the
worker stops, on the real broker.

The training and models agents' ``training.audit`` / ``models.audit`` (``CoPartitionedOutput``:
a reader and a fenced transactional producer per claimed partition), the usage agent's
``usage.windows`` (``KafkaKeyedLog``: a router and fenced producers) and the policy agent's
``policy.decisions`` output and reference data (``ReferenceData``: two consumers) were never
stopped: the agents have no stop of their own, so they stayed open until the process ended
("Unclosed AIOKafkaConsumer/Producer", open transactions left to time out). Now faust's
``App.on_stop`` (what a stopping worker runs) closes each of them (``agents/shutdown.py``), as
``test_input_log_close.py`` shows for the input logs, and a client closed so refuses later use
instead of opening connections again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import faust
import pytest

from ledgerflow.agents import models, policy, training, usage
from ledgerflow.agents.app import create_app
from ledgerflow.agents.batchloop import BatchLoop, KafkaSource
from ledgerflow.agents.fence import FencedOutput
from ledgerflow.agents.keyedlog import KafkaKeyedLog
from ledgerflow.agents.output import CoPartitionedOutput
from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.reference import ReferenceData


@dataclass
class Opened:
    """The aiokafka clients a port opened, and a use of the port that must be refused once closed."""

    clients: list[Any]
    again: Callable[[], Awaitable[object]]


async def _output(output: CoPartitionedOutput) -> Opened:
    await output.start()
    await output.claim(0)  # a fenced transactional producer for partition 0
    assert output._writers is not None
    return Opened([output._reader, output._writers._writers[0].producer], lambda: output.claim(0))


async def _windows(windows: KafkaKeyedLog) -> Opened:
    await windows.claim(0)
    assert windows._writers is not None
    return Opened([windows._router, windows._writers._writers[0].producer], lambda: windows.claim(0))


async def _training(app: faust.App, settings: Settings) -> list[Opened]:
    output = training.Ports.connect(app, settings).output
    assert isinstance(output, CoPartitionedOutput)
    return [await _output(output)]


async def _models(app: faust.App, settings: Settings) -> list[Opened]:
    output = models.register(app, settings)._output
    assert isinstance(output, CoPartitionedOutput)
    return [await _output(output)]


async def _usage(app: faust.App, settings: Settings) -> list[Opened]:
    windows = usage.Ports.connect(app, settings).windows
    assert isinstance(windows, KafkaKeyedLog)
    return [await _windows(windows)]


async def _policy(app: faust.App, settings: Settings) -> list[Opened]:
    """Wired as the worker wires it (``policy.register``)."""
    ports = policy.register(app, BatchLoop(KafkaSource(settings), []), settings)._ports
    assert isinstance(ports.output, FencedOutput) and isinstance(ports.output.inner, CoPartitionedOutput)
    reference = ports.reference
    assert isinstance(reference, ReferenceData)
    await reference.start()
    read = Opened([reference._consumer, reference._ends], reference.start)
    return [await _output(ports.output.inner), read]


OWNERS: dict[str, Callable[[faust.App, Settings], Awaitable[list[Opened]]]] = {
    "training": _training,
    "models": _models,
    "usage": _usage,
    "policy": _policy,
}


@pytest.mark.parametrize("owner", list(OWNERS))
def test_the_agents_kafka_clients_are_stopped_when_the_worker_stops(settings: Settings, owner: str) -> None:
    async def scenario() -> None:
        app = create_app(settings, app_id=f"ledgerflow-clients-close-{owner}")
        opened = await OWNERS[owner](app, settings)
        clients = [c for o in opened for c in o.clients]
        assert clients and all(c is not None and c._closed is False for c in clients)
        await app.on_stop()  # what faust runs when the worker stops
        still_open = [type(c).__name__ for c in clients if not c._closed]
        assert not still_open, f"{still_open} outlived the worker's stop"
        for port in opened:
            with pytest.raises(InfrastructureError, match="closed"):
                await port.again()

    asyncio.run(scenario())
