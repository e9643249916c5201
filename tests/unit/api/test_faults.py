"""api/faults.py: ``bounded_retried`` carries a write through a fault that outlasts one attempt
(a Redis Cluster failover), and gives up with the fault once its time is spent."""

from __future__ import annotations

import asyncio

import pytest
import redis.exceptions

from ledgerflow.api.faults import bounded_retried
from ledgerflow.errors import InfrastructureError


class Flaky:
    """A call that fails with a connection error ``failures`` times, then answers ``"OK"``."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts = 0

    async def call(self) -> str:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise redis.exceptions.ConnectionError("master down")
        return "OK"


def test_a_write_failing_through_a_failover_lands_once_the_fault_passes() -> None:
    flaky = Flaky(failures=3)
    assert (
        asyncio.run(bounded_retried(flaky.call, "Redis claim position", timeout=2.0, first_pause=0.01))
        == "OK"
    )
    assert flaky.attempts == 4


def test_a_fault_outlasting_the_deadline_propagates_as_infrastructure_error() -> None:
    flaky = Flaky(failures=10_000)
    with pytest.raises(InfrastructureError, match="Redis claim position failed"):
        asyncio.run(bounded_retried(flaky.call, "Redis claim position", timeout=0.2, first_pause=0.01))
    assert 2 <= flaky.attempts < 10_000  # tried again, but within its time


def test_a_hung_attempt_is_cut_at_the_deadline() -> None:
    async def hang() -> str:
        await asyncio.sleep(60)
        return "never"

    async def timed() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(InfrastructureError):
            await bounded_retried(hang, "Redis claim position", timeout=0.2)
        return loop.time() - start

    assert asyncio.run(timed()) < 5  # bounded by its timeout, not the hung call's 60 s
