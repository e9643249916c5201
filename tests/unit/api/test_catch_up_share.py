"""One tenant's SSE catch-ups hold at most a quarter of the edge's catch-up slots: its further
ones wait for its own, and another tenant's resume is not queued behind them (the slots were one
pool: a tenant resuming 32 streams from the log's start made every other tenant's resume wait)."""

from __future__ import annotations

import asyncio

from ledgerflow.api.hub import Hub, Subscriber, tenant_catch_up_slots
from ledgerflow.config import Settings

GAPS = {("e", 0): (0, 10)}


def test_a_tenant_may_hold_a_quarter_of_the_slots_and_at_least_one() -> None:
    assert [tenant_catch_up_slots(n) for n in (1, 3, 4, 7, 32)] == [1, 1, 1, 1, 8]


async def _scenario() -> None:
    hub = Hub(Settings(), catch_up_slots=4)  # a tenant's share: one
    first = hub.catch_up(Subscriber("acme", None, {}), GAPS)
    await asyncio.wait_for(first.__anext__(), 5)  # holds acme's slot (no broker asked yet)
    second = hub.catch_up(Subscriber("acme", None, {}), GAPS)
    waiting = asyncio.ensure_future(second.__anext__())
    other = hub.catch_up(Subscriber("globex", None, {}), GAPS)
    try:
        started = await asyncio.wait_for(other.__anext__(), 5)  # another tenant is not queued
        assert started.frames == []
        await asyncio.sleep(0.3)
        assert not waiting.done(), "acme's second catch-up ran beside its first: no per-tenant share"
        await first.aclose()  # acme's slot is freed: its second catch-up goes on
        await asyncio.wait_for(waiting, 5)
    finally:
        waiting.cancel()
        for stream in (first, second, other):
            await stream.aclose()


def test_a_tenants_further_catch_ups_wait_for_its_own_not_for_other_tenants() -> None:
    asyncio.run(_scenario())
