"""``backoff``: the projector's waits, retry until Redis answers, one log line per outage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from ledgerflow.projections.backoff import CAP_S, FIRST_S, JITTER, Backoff
from ledgerflow.projections.metrics import REDIS_OUTAGES, REDIS_UP


def down_for(failures: int) -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A step that finds Redis down ``failures`` times, then answers "ok"; and its calls."""
    calls: list[int] = []

    async def step() -> str:
        calls.append(len(calls))
        if len(calls) <= failures:
            raise RedisConnectionError("Connection refused")
        return "ok"

    return step, calls


def test_waits_double_from_a_tenth_of_a_second_to_five_stretched_by_up_to_a_fifth() -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    step, _ = down_for(9)
    assert asyncio.run(Backoff("unit", sleep=sleep).run(step)) == "ok"
    plain = [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0, 5.0]
    assert len(waits) == len(plain)
    for wait, least in zip(waits, plain, strict=True):
        assert least <= wait <= min(CAP_S, least * (1 + JITTER))
    assert (FIRST_S, CAP_S, JITTER) == (0.1, 5.0, 0.2)


def test_retries_until_the_step_succeeds_logging_one_line_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    step, calls = down_for(4)
    outages = REDIS_OUTAGES._value.get()
    backoff = Backoff("unit", first=0.0, cap=0.0)
    with caplog.at_level(logging.WARNING, logger="ledgerflow.projections.backoff"):
        assert asyncio.run(backoff.run(step)) == "ok"
    assert len(calls) == 5
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if "Redis unreachable" in m]) == 1
    assert len([m for m in lines if "Redis is back" in m]) == 1
    assert REDIS_OUTAGES._value.get() == outages + 1
    assert REDIS_UP._value.get() == 1.0 and not backoff.down


def test_other_errors_propagate() -> None:
    async def broken() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        asyncio.run(Backoff("unit", first=0.0, cap=0.0).run(broken))
