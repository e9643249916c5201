"""The edge's lifespan stops every client it started, also when a later one fails to start
(issue 12: a failing ``hub.start()`` leaked the producer), against the real broker and Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ledgerflow.api.app import create_app
from ledgerflow.api.hub import Hub
from ledgerflow.auth.devkeys import ensure_dev_keys
from ledgerflow.config import Settings


class HubDown(Exception):
    pass


def test_a_hub_that_fails_to_start_leaves_no_kafka_client_running(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ensure_dev_keys(settings.state_dir)
    started: list[Any] = []
    real_producer_start, real_consumer_start = AIOKafkaProducer.start, AIOKafkaConsumer.start

    async def producer_start(self: AIOKafkaProducer) -> None:
        await real_producer_start(self)
        started.append(self)

    async def consumer_start(self: AIOKafkaConsumer) -> None:
        await real_consumer_start(self)
        started.append(self)

    async def hub_start(self: Hub) -> None:
        await asyncio.sleep(0.1)  # tries to connect, then gives up
        raise HubDown("the hub cannot start")

    monkeypatch.setattr(AIOKafkaProducer, "start", producer_start)
    monkeypatch.setattr(AIOKafkaConsumer, "start", consumer_start)
    monkeypatch.setattr(Hub, "start", hub_start)
    app = create_app(settings)

    async def run() -> None:
        with pytest.raises(HubDown):
            async with app.router.lifespan_context(app):
                pass

    asyncio.run(run())
    assert len(started) == 2, "the producer and the offsets consumer started before the hub"
    for client in started:
        assert client._closed, f"{type(client).__name__} was left running"
