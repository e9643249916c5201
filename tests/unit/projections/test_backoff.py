"""``backoff``: the projector's waits, retry until Redis answers, one log line per outage."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from redis._parsers.base import _RESPBase
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from ledgerflow.projections.backoff import CAP_S, FIRST_S, JITTER, Backoff, transient
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


# Redis 7's refusals, read by redis-py's own parser: BUSY and MISCONF are plain ResponseErrors.
REFUSALS = [
    "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to disk.",
    "READONLY You can't write against a read only replica.",
    "OOM command not allowed when used memory > 'maxmemory'.",
    "LOADING Redis is loading the dataset in memory",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "NOREPLICAS Not enough good replicas to write.",
]


def refused_for(failures: int, reply: str) -> tuple[Callable[[], Awaitable[str]], list[bool]]:
    """A step that Redis refuses with ``reply`` ``failures`` times, then answers "ok"; and, per
    call, whether ``ledgerflow_projector_redis_up`` was 1 when it ran."""
    up: list[bool] = []

    async def step() -> str:
        up.append(REDIS_UP._value.get() == 1.0)
        if len(up) <= failures:
            raise _RESPBase.parse_error(reply)
        return "ok"

    return step, up


@pytest.mark.parametrize("reply", REFUSALS, ids=[r.split()[0] for r in REFUSALS])
def test_a_redis_refusing_commands_is_backed_off_like_one_that_is_down(
    reply: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A Redis that is up but refuses for now (a long script, a failed background save, a replica,
    out of memory…) is waited for, shown as down, and logged once: not an error that stops the
    projector (an escaped BUSY from the catch-up timer stopped the worker) or logs every retry."""
    assert transient(_RESPBase.parse_error(reply))
    step, up = refused_for(3, reply)
    REDIS_UP.set(1)
    with caplog.at_level(logging.WARNING, logger="ledgerflow.projections.backoff"):
        assert asyncio.run(Backoff("unit", first=0.0, cap=0.0).run(step)) == "ok"
    assert up == [True, False, False, False]  # down from the first refusal until it answers
    lines = [r.getMessage() for r in caplog.records]
    assert len([m for m in lines if f"Redis refusing commands: {reply.split()[0]}" in m]) == 1
    assert len([m for m in lines if "Redis is back" in m]) == 1
    assert REDIS_UP._value.get() == 1.0


@pytest.mark.parametrize(
    "reply",
    [
        "WRONGTYPE Operation against a key holding the wrong kind of value",
        "ERR user_script:1: Script attempted to access nonexistent global variable 'x'",
        "NOTBUSY No scripts in execution right now.",
    ],
)
def test_an_error_reply_that_is_not_a_refusal_propagates(reply: str) -> None:
    step, up = refused_for(1, reply)
    assert not transient(_RESPBase.parse_error(reply))
    with pytest.raises(ResponseError):
        asyncio.run(Backoff("unit", first=0.0, cap=0.0).run(step))
    assert len(up) == 1
