"""The projector's catch-up timer: nothing may escape a faust timer (an exception there stops
the worker), so a check of the read models that fails is one warning and the next tick tries again."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiokafka.errors import KafkaConnectionError

from ledgerflow.agents.projector import watched


def test_a_check_that_fails_is_one_warning_not_an_escaped_exception(caplog: pytest.LogCaptureFixture) -> None:
    async def kafka_down_during_the_replay() -> None:
        raise KafkaConnectionError("no broker at 127.0.0.1:1")

    with caplog.at_level(logging.WARNING, logger="ledgerflow.agents.projector"):
        assert asyncio.run(watched(kafka_down_during_the_replay)) is False
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "checking the read models failed (KafkaConnectionError" in lines[0]
    assert "next try in 2 s" in lines[0]


def test_a_check_that_succeeds_lets_the_tick_go_on() -> None:
    async def fine() -> None:
        return None

    assert asyncio.run(watched(fine)) is True


def test_a_cancelled_tick_stays_cancelled() -> None:
    """The worker stopping cancels its timers: that is not a failure to swallow."""

    async def cancelled() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(watched(cancelled))
