"""A small SSE client (WHATWG parsing rules) over httpx, for the demo, tests and benchmarks."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None  # None for control frames (they carry no id)


async def parse(lines: AsyncIterator[str]) -> AsyncIterator[SseEvent]:
    event, data, ident = "message", [], None
    async for line in lines:
        if line == "":
            if data:
                yield SseEvent(event, "\n".join(data), ident)
            event, data, ident = "message", [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            ident = value


async def follow(
    client: httpx.AsyncClient, url: str, token: str, last_event_id: str | None = None
) -> AsyncIterator[SseEvent]:
    """Frames of one SSE connection (raises httpx.HTTPStatusError on a non-200 answer)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    async with client.stream("GET", url, headers=headers, timeout=httpx.Timeout(10.0, read=None)) as resp:
        if resp.status_code != 200:
            await resp.aread()
            resp.raise_for_status()
        async for frame in parse(resp.aiter_lines()):
            yield frame
