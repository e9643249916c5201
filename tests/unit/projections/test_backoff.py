"""``backoff``: capped exponential delays, retry until Redis answers, one log line per outage."""

from __future__ import annotations

import asyncio
import logging

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from ledgerflow.projections.backoff import Backoff, delay
from ledgerflow.projections.metrics import REDIS_OUTAGES, REDIS_UP


def test_delays_double_from_the_first_and_stop_at_the_cap() -> None:
    assert [delay(n, first=0.1, cap=1.0) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert delay(10_000, first=0.1, cap=5.0) == 5.0  # no overflow however long the outage


def test_jitter_stretches_a_delay_but_never_past_the_cap() -> None:
    assert delay(1, first=0.1, cap=5.0, jitter=0.5) == pytest.approx(0.15)
    assert delay(30, first=0.1, cap=5.0, jitter=0.9) == 5.0


def test_retries_until_the_step_succeeds_logging_one_line_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls <= 4:
            raise RedisConnectionError("Connection refused")
        return "ok"

    outages = REDIS_OUTAGES._value.get()
    backoff = Backoff("unit", first=0.0, cap=0.0)
    with caplog.at_level(logging.WARNING, logger="ledgerflow.projections.backoff"):
        assert asyncio.run(backoff.run(flaky)) == "ok"
    assert calls == 5
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
