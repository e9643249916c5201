"""One tenant's SSE catch-ups hold at most a quarter of the edge's catch-up slots: its further
ones wait for its own, and another tenant's resume is not queued behind them (the slots were one
pool: a tenant resuming 32 streams from the log's start made every other tenant's resume wait).
A tenant's share is kept only while one of its catch-ups holds or waits for a slot."""

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


async def _forgotten() -> None:
    hub = Hub(Settings(), catch_up_slots=4)  # a tenant's share: one
    first = hub.catch_up(Subscriber("acme", None, {}), GAPS)
    await asyncio.wait_for(first.__anext__(), 5)
    second = hub.catch_up(Subscriber("acme", None, {}), GAPS)
    waiting = asyncio.ensure_future(second.__anext__())
    try:
        await asyncio.sleep(0.1)
        assert list(hub._tenant_slots) == ["acme"]
        await first.aclose()  # its second catch-up takes the share's slot: the share stays
        await asyncio.wait_for(waiting, 5)
        assert list(hub._tenant_slots) == ["acme"]
        third = hub.catch_up(Subscriber("acme", None, {}), GAPS)
        queued = asyncio.ensure_future(third.__anext__())
        await asyncio.sleep(0.1)
        assert not queued.done(), "the share was forgotten while a catch-up held its slot"
        await second.aclose()
        await asyncio.wait_for(queued, 5)
        await third.aclose()
        assert hub._tenant_slots == {}, "the share outlived the tenant's last catch-up"
        for n in range(100):  # every tenant that ever resumed a stream left an entry
            stream = hub.catch_up(Subscriber(f"tenant-{n}", None, {}), GAPS)
            await asyncio.wait_for(stream.__anext__(), 5)
            await stream.aclose()
        assert hub._tenant_slots == {}
    finally:
        waiting.cancel()
        await first.aclose()
        await second.aclose()


def test_a_tenants_share_is_forgotten_when_its_last_catch_up_ends() -> None:
    asyncio.run(_forgotten())
