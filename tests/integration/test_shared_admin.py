"""The edge's one Kafka admin client (``kafka.admin.SharedAdmin``, used by ``/v1/overview``)
against the real broker: reused across calls instead of one client per request, dropped and
replaced after a failed call, closed by its owner, and a broker that does not answer leaves
nothing behind."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaError

from ledgerflow.config import Settings
from ledgerflow.kafka.admin import SharedAdmin
from ledgerflow.netutil import free_port


class Boom(Exception):
    pass


def test_calls_share_one_started_client_until_a_call_fails_or_it_is_closed(settings: Settings) -> None:
    async def scenario() -> None:
        shared = SharedAdmin(settings.kafka_bootstrap, 10_000)
        try:
            async with shared.client() as first:
                await first.list_consumer_groups()
            async with shared.client() as again:
                assert again is first, "a second call started a second client"
            with pytest.raises(Boom):
                async with shared.client() as failing:
                    raise Boom
            async with shared.client() as fresh:
                assert fresh is not failing, "a client that failed a call is reused"
                await fresh.list_consumer_groups()
            await shared.close()
            async with shared.client() as reopened:
                assert reopened is not fresh
                await reopened.list_consumer_groups()
        finally:
            await shared.close()

    asyncio.run(scenario())


def test_a_broker_that_does_not_answer_fails_the_call_and_keeps_nothing() -> None:
    async def scenario() -> None:
        shared = SharedAdmin(f"127.0.0.1:{free_port()}", 2_000)
        for _ in range(2):  # the second call tries again rather than reusing a broken client
            with pytest.raises(KafkaError):
                async with shared.client():
                    pass
        await shared.close()

    asyncio.run(scenario())
