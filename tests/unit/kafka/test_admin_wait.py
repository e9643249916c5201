"""``kafka.admin.patiently``: the admin questions wait out Kafka's retriable errors, for a bounded
time, and raise every other error at once (an injected question, sleep and clock: no I/O)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest
from aiokafka.errors import (
    CoordinatorLoadInProgressError,
    GroupAuthorizationFailedError,
    GroupCoordinatorNotAvailableError,
    KafkaConnectionError,
    KafkaError,
)

from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.admin import ADMIN_WAIT_S, patiently


class Clock:
    """A clock that only the injected sleep moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def failing(*errors: BaseException, answer: str = "answer") -> tuple[Callable[[], Awaitable[str]], list[int]]:
    """A question that raises ``errors`` in turn, then answers; and the list of its calls."""
    calls: list[int] = []

    async def ask() -> str:
        calls.append(len(calls))
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return answer

    return ask, calls


def ask_patiently(ask: Callable[[], Awaitable[str]], clock: Clock, wait_s: float = ADMIN_WAIT_S) -> str:
    return asyncio.run(
        patiently(ask, "the committed offsets of g", wait_s=wait_s, sleep=clock.sleep, clock=clock)
    )


def test_a_fresh_cluster_without_a_group_coordinator_is_waited_for(caplog: pytest.LogCaptureFixture) -> None:
    # A fresh three-broker cluster answered the first lookup with GroupCoordinatorNotAvailable:
    # both workers of the chaos run exited at start ("unexpected GroupCoordinatorNotAvailableError").
    clock = Clock()
    ask, calls = failing(
        GroupCoordinatorNotAvailableError("no coordinator yet"),
        CoordinatorLoadInProgressError("loading"),
        KafkaConnectionError("a broker restarting"),
    )
    with caplog.at_level(logging.INFO, logger="ledgerflow.kafka.admin"):
        assert ask_patiently(ask, clock) == "answer"
    assert len(calls) == 4 and clock.slept == [0.25, 0.5, 1.0]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[0].startswith(
        "the committed offsets of g not readable yet (GroupCoordinatorNotAvailableError"
    )
    assert lines[0].endswith("asking again in 0.25 s")


def test_an_answer_at_once_neither_sleeps_nor_logs(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    ask, calls = failing()
    with caplog.at_level(logging.INFO, logger="ledgerflow.kafka.admin"):
        assert ask_patiently(ask, clock) == "answer"
    assert calls == [0] and clock.slept == [] and caplog.records == []


def test_the_wait_is_bounded_and_the_last_retriable_error_is_raised() -> None:
    clock = Clock()
    ask, calls = failing(*[GroupCoordinatorNotAvailableError(f"still none {n}") for n in range(100)])
    with pytest.raises(GroupCoordinatorNotAvailableError, match="still none"):
        ask_patiently(ask, clock, wait_s=10.0)
    # 0.25 + 0.5 + 1 + 2 + 4 = 7.75 s; a 5 s wait more would pass the 10 s bound, so it stops.
    assert clock.slept == [0.25, 0.5, 1.0, 2.0, 4.0] and len(calls) == 6


def test_the_waits_between_questions_stop_growing_at_five_seconds() -> None:
    clock = Clock()
    ask, _ = failing(*[KafkaConnectionError("broker away") for _ in range(9)])
    assert ask_patiently(ask, clock) == "answer"
    assert clock.slept == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize(
    "error",
    [
        GroupAuthorizationFailedError("not allowed"),  # a Kafka error no retry mends
        KafkaError("unknown"),  # KafkaError itself is not retriable
        InfrastructureError("topic x does not exist"),
        ValueError("a bug"),
    ],
)
def test_an_error_no_retry_mends_is_raised_at_once(error: Exception) -> None:
    clock = Clock()
    ask, calls = failing(error)
    with pytest.raises(type(error)):
        ask_patiently(ask, clock)
    assert calls == [0] and clock.slept == []


def test_a_retriable_error_after_a_wait_then_a_final_one_is_raised_at_once() -> None:
    clock = Clock()
    ask, calls = failing(
        GroupCoordinatorNotAvailableError("none yet"), GroupAuthorizationFailedError("denied")
    )
    with pytest.raises(GroupAuthorizationFailedError):
        ask_patiently(ask, clock)
    assert len(calls) == 2 and clock.slept == [0.25]


def test_no_wait_means_one_question() -> None:
    clock = Clock()
    ask, calls = failing(GroupCoordinatorNotAvailableError("none yet"))
    with pytest.raises(GroupCoordinatorNotAvailableError):
        ask_patiently(ask, clock, wait_s=0.0)
    assert calls == [0] and clock.slept == []


def test_cancelling_the_wait_cancels_it() -> None:
    async def main() -> None:
        never = asyncio.Event()

        async def ask() -> str:
            raise GroupCoordinatorNotAvailableError("none yet")

        async def sleep(_: float) -> None:
            await never.wait()

        task = asyncio.create_task(patiently(ask, "offsets", sleep=sleep))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
