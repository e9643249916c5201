"""Issue 18, case 4 on the real edge: 2,000 made-up HTTP methods and 2,000 unknown paths
add no series to ``/metrics`` (labels only from closed sets; the rest is ``other`` or
``unmatched``). Prints the series count before and after the flood."""

from __future__ import annotations

import asyncio

import httpx

FLOOD = 2000


def _series(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


async def _flood(edge: str, requests: list[tuple[str, str]]) -> list[int]:
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=edge, timeout=30, limits=limits) as client:
        gate = asyncio.Semaphore(16)

        async def one(method: str, path: str) -> int:
            async with gate:
                return (await client.request(method, path)).status_code

        return await asyncio.gather(*(one(m, p) for m, p in requests))


def test_a_flood_of_unknown_methods_and_paths_keeps_the_series_count_fixed(edge: str) -> None:
    methods = [(f"X{i:05d}", "/healthz") for i in range(FLOOD)]
    paths = [("GET", f"/no/such/path/{i}?q={i}") for i in range(FLOOD)]
    mixed = [(f"Y{i}", f"/v1/conversations/c{i}") for i in range(100)]
    # Warm up: one request of each kind, so every label combination the flood can reach exists.
    statuses = asyncio.run(_flood(edge, [methods[0], paths[0], mixed[0], ("GET", "/metrics")]))
    assert all(s < 500 for s in statuses), statuses
    before = _series(httpx.get(f"{edge}/metrics", timeout=10).text)

    statuses = asyncio.run(_flood(edge, methods[1:] + paths[1:] + mixed[1:]))

    assert all(s < 500 for s in statuses)
    after_text = httpx.get(f"{edge}/metrics", timeout=10).text
    after = _series(after_text)
    print(f"\n/metrics series: {len(before)} before, {len(after)} after {2 * FLOOD + 100} hostile requests")
    assert len(after) == len(before), sorted(set(_name(s) for s in after) - set(_name(s) for s in before))[
        :10
    ]
    assert "X0" not in after_text and "/no/such" not in after_text and "Y1" not in after_text
    assert 'method="other"' in after_text and 'route="unmatched"' in after_text


def _name(sample: str) -> str:
    return sample.rsplit(" ", 1)[0]
