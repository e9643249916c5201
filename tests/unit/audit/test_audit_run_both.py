"""The read-model audit runs the scratch rebuild and the live read together: when one fails, the
other must be stopped before the failure reaches the code that deletes the scratch space."""

from __future__ import annotations

import asyncio

import pytest

from ledgerflow.audit.projections import run_both


def test_both_results_come_back_in_order() -> None:
    async def value(v: int, delay: float) -> int:
        await asyncio.sleep(delay)
        return v

    assert asyncio.run(run_both(value(1, 0.02), value(2, 0.0))) == (1, 2)


def test_a_failure_stops_the_other_before_it_propagates() -> None:
    log: list[str] = []

    async def rebuilding() -> int:
        try:
            for i in range(50):
                await asyncio.sleep(0.01)
                log.append(f"write {i}")
        except asyncio.CancelledError:
            log.append("rebuild stopped")
            raise
        return 0

    async def reading_live() -> None:
        await asyncio.sleep(0.025)
        raise TypeError("the live read failed")

    async def audit() -> None:
        try:
            await run_both(rebuilding(), reading_live())
        finally:
            log.append("scratch deleted")

    with pytest.raises(TypeError, match="the live read failed"):  # itself, not an ExceptionGroup
        asyncio.run(audit())
    assert log[-2:] == ["rebuild stopped", "scratch deleted"], log
    assert len([line for line in log if line.startswith("write")]) < 10, "the rebuild ran on"
