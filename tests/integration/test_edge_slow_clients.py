"""Slow clients on the real edge (``ledgerflow serve``), over raw sockets: none holds a connection
or a request task for longer than its deadline, and the edge serves everyone else meanwhile.

The edge runs with ``LEDGERFLOW_HEADER_TIMEOUT_S=1`` and ``LEDGERFLOW_BODY_TIMEOUT_S=2``. Before
these deadlines each slow client below was held for as long as it kept sending a byte every few
seconds (a silent connection: for ever); here each must be let go within ``BOUND_S``, a bound
generous enough for a loaded machine."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Coroutine, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from ledgerflow.config import Settings
from ledgerflow.kafka.admin import ensure_topics
from tests.integration.edgekit import bearer, turn
from tests.support.processes import running_edge

HEADER_TIMEOUT_S = 1
BODY_TIMEOUT_S = 2
BOUND_S = 15.0
"""How long a test waits for the edge to let a slow client go (the deadlines are 1 s and 2 s)."""
DRIP_S = 0.3
"""A slow client sends one byte this often: far more often than any deadline."""
Dripped = tuple[bytes, bool]
"""What the edge sent a slow client, and whether it closed the connection within ``BOUND_S``."""


@pytest.fixture(scope="module")
def slow_edge(stack: Settings) -> Iterator[tuple[Settings, str]]:
    """One edge with short client deadlines for the module (its own topic prefix)."""
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings))
    env = {
        "LEDGERFLOW_HEADER_TIMEOUT_S": str(HEADER_TIMEOUT_S),
        "LEDGERFLOW_BODY_TIMEOUT_S": str(BODY_TIMEOUT_S),
    }
    with running_edge(settings, stack.state_dir / "test-logs" / "test_edge_slow_clients", env) as (_, base):
        yield settings, base


async def drip(base: str, first: bytes, byte: bytes = b"a") -> Dripped:
    """Send ``first``, then ``byte`` every ``DRIP_S`` until the edge answers anything or closes
    (``byte`` empty: send nothing more). What the edge sent, and whether it closed the connection
    within ``BOUND_S``."""
    where = urlsplit(base)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    loop = asyncio.get_running_loop()
    end = loop.time() + BOUND_S
    got = b""
    try:
        writer.write(first)
        await writer.drain()
        while loop.time() < end:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), DRIP_S)
            except TimeoutError:
                if not got and byte:
                    writer.write(byte)
                    await writer.drain()
                continue
            if not chunk:
                return got, True
            got += chunk
        return got, False
    except (ConnectionResetError, BrokenPipeError):
        return got, True
    finally:
        writer.close()


async def served_meanwhile(base: str, settings: Settings, slow: asyncio.Future[list[Dripped]]) -> list[int]:
    """Statuses of ordinary requests (a health check and a published turn) sent while ``slow`` runs."""
    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=10) as client:
        while not slow.done():
            statuses.append((await client.get(f"{base}/healthz")).status_code)
            posted = await client.post(
                f"{base}/v1/events", json=turn("c-meanwhile"), headers=bearer(settings)
            )
            statuses.append(posted.status_code)
            await asyncio.sleep(0.2)
    return statuses


def while_served(
    base: str, settings: Settings, *slow: Coroutine[Any, Any, Dripped]
) -> tuple[list[Dripped], list[int]]:
    """Run the slow clients ``slow`` (``drip`` coroutines) and ordinary requests side by side."""

    async def scenario() -> tuple[list[Dripped], list[int]]:
        clients = asyncio.gather(*slow)
        others = await served_meanwhile(base, settings, clients)
        return await clients, others

    return asyncio.run(scenario())


def limited(base: str, limit: str) -> float:
    """``ledgerflow_edge_limited_total{limit}`` of the edge (0 if it has no such series)."""
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    found = re.search(rf'^ledgerflow_edge_limited_total{{limit="{limit}"}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


def post_head(settings: Settings, target: str, length: int) -> bytes:
    auth = bearer(settings)["Authorization"]
    return (
        f"POST {target} HTTP/1.1\r\nHost: edge\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def test_a_body_trickling_in_is_408_within_the_deadline_while_others_are_served(
    slow_edge: tuple[Settings, str],
) -> None:
    settings, base = slow_edge
    before = limited(base, "body_timeout")
    [(answer, closed)], others = while_served(
        base, settings, drip(base, post_head(settings, "/v1/events", 100_000) + b"{", b" ")
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), answer
    assert b"\r\nconnection: close" in head.lower() and b"application/problem+json" in head, head
    problem = orjson.loads(body)
    assert problem["title"] == "Request Timeout" and problem["limit"] == "body_timeout", problem
    assert problem["detail"].startswith(f"request body not received within {BODY_TIMEOUT_S} s"), problem
    assert closed, "the edge kept the connection after its 408"
    assert others and set(others) <= {200, 202}, others
    assert limited(base, "body_timeout") >= before + 1


def test_a_slowloris_head_and_a_silent_connection_are_closed_while_others_are_served(
    slow_edge: tuple[Settings, str],
) -> None:
    settings, base = slow_edge
    before = limited(base, "header_timeout")
    slowloris = drip(base, b"GET /healthz HTTP/1.1\r\nHost: edge\r\nX-Slow: ")
    silent = drip(base, b"", b"")
    kept_alive = drip(
        base, b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\nGET /heal"
    )  # a second request stalls
    results, others = while_served(base, settings, slowloris, silent, kept_alive)
    for (answer, closed), who in zip(results[:2], ("slowloris", "silent"), strict=True):
        assert closed, f"the {who} connection was still open after {BOUND_S} s"
        assert answer == b"", (who, answer)  # no request: nothing to answer
    answer, closed = results[2]
    assert answer.startswith(b"HTTP/1.1 200 ") and closed, (answer, closed)
    assert others and set(others) <= {200, 202}, others
    assert limited(base, "header_timeout") >= before + 3


def test_the_rest_of_a_body_the_edge_answered_without_reading_is_not_waited_for(
    slow_edge: tuple[Settings, str],
) -> None:
    settings, base = slow_edge
    before = limited(base, "body_timeout")
    # /healthz has no POST: 405 at once, the body is never read; uvicorn drained it for as long as it came.
    [(answer, closed)], others = while_served(
        base, settings, drip(base, post_head(settings, "/healthz", 100_000) + b"{", b" ")
    )
    assert answer.startswith(b"HTTP/1.1 405 "), answer
    assert closed, f"the edge still drained the unread body after {BOUND_S} s"
    assert others and set(others) <= {200, 202}, others
    assert limited(base, "body_timeout") >= before + 1


def test_a_slow_body_within_the_deadline_is_accepted(slow_edge: tuple[Settings, str]) -> None:
    settings, base = slow_edge
    body = orjson.dumps(turn(f"c-{uuid.uuid4().hex[:8]}"))
    pieces = [body[i : i + len(body) // 4 + 1] for i in range(0, len(body), len(body) // 4 + 1)]

    async def send_slowly() -> bytes:
        where = urlsplit(base)
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        try:
            writer.write(post_head(settings, "/v1/events", len(body)))
            for piece in pieces:  # about 0.4 s in all, a fifth of the 2 s deadline
                await asyncio.sleep(0.1)
                writer.write(piece)
                await writer.drain()
            return await asyncio.wait_for(reader.read(65536), BOUND_S)
        finally:
            writer.close()

    answer = asyncio.run(send_slowly())
    assert answer.startswith(b"HTTP/1.1 202 "), answer
