"""A client that disconnects halfway through its request body, on the real edge (``ledgerflow serve``),
over a raw socket: not a fault of the edge. It is answered (to no one) with a 400, logged in one line
at info, and neither logged as an unhandled error with a traceback nor counted as a 5xx (before, it
was both: Starlette's ``ClientDisconnect`` fell through to the 500 of ``problems.problem_for`` and to
uvicorn's "Exception in ASGI application"); the edge goes on answering. A client that leaves an SSE
stream is no error either (a guard: uvicorn's ASGI 2.3 reports it to the stream as
``http.disconnect``, never as ``ClientDisconnect``).

The edge logs JSON lines (``LEDGERFLOW_LOG_FORMAT=json``): ledgerflow's loggers at info, every other at
warning, each record one object with its ``level`` and, if one was logged, its ``exception``."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from ledgerflow.api.problems import CLIENT_GONE
from ledgerflow.config import Settings
from tests.integration.edgekit import bearer, turn
from tests.support.processes import Process, running_edge

DECLARED = 1000
SENT = b'{"type": "'  # 10 of the 1000 bytes declared
BOUND_S = 15.0
"""How long the test waits for the edge to have handled the cut-off request."""
Requests = Counter[tuple[str, str, str]]
"""``ledgerflow_http_requests_total`` by (route, method, status)."""


@pytest.fixture
def json_edge(settings: Settings, log_dir: Path) -> Iterator[tuple[Process, str]]:
    """``ledgerflow serve`` logging JSON lines; the process (for its log) and its base URL."""
    with running_edge(settings, log_dir, {"LEDGERFLOW_LOG_FORMAT": "json"}) as (proc, base):
        yield proc, base


def requests_counted(base: str) -> Requests:
    """The edge's ``ledgerflow_http_requests_total`` series."""
    metrics = httpx.get(f"{base}/metrics", timeout=10).text
    counted: Requests = Counter()
    for found in re.finditer(r"^ledgerflow_http_requests_total\{([^}]*)\} (\S+)$", metrics, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group(1)))
        counted[(labels["route"], labels["method"], labels["status"])] = float(found.group(2))
    return counted


def answered(counted: Requests, route: str, method: str) -> float:
    return sum(n for (r, m, _), n in counted.items() if (r, m) == (route, method))


def handled(proc: Process, base: str, before: Requests, route: str, method: str) -> Requests:
    """The edge's request counts, once they hold one more ``method route`` than ``before``."""
    deadline = time.monotonic() + BOUND_S
    after = requests_counted(base)
    while answered(after, route, method) < answered(before, route, method) + 1:
        waited = f"{method} {route} not counted within {BOUND_S} s"
        assert time.monotonic() < deadline, f"{waited}:\n{proc.log_tail()}"
        time.sleep(0.1)
        after = requests_counted(base)
    return after


def server_errors(counted: Requests) -> float:
    return sum(n for (_, _, status), n in counted.items() if status.startswith("5"))


async def cut_off(base: str, head: bytes, body: bytes) -> None:
    """Send ``head`` and the first bytes of a body, give the edge time to start reading it, then close."""
    where = urlsplit(base)
    _, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(head + body)
        await writer.drain()
        await asyncio.sleep(0.5)
    finally:
        writer.close()
        await writer.wait_closed()


async def leave_stream(base: str, head: bytes) -> bytes:
    """Open a stream with ``head``, read its first bytes (the response head, a checkpoint), then close."""
    where = urlsplit(base)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    try:
        writer.write(head)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65536), BOUND_S)
    finally:
        writer.close()
        await writer.wait_closed()


def assert_no_error_logged(proc: Process) -> list[dict]:
    """The edge logged nothing at error and no exception; its JSON records."""
    records = log_records(proc)
    errors = [r for r in records if r.get("level") in ("ERROR", "CRITICAL") or "exception" in r]
    assert not errors, errors
    text = proc.log.read_text(errors="replace")
    assert "unhandled" not in text and "Traceback" not in text, proc.log_tail()
    return records


def log_records(proc: Process) -> list[dict]:
    """The edge's JSON log records (lines that are not JSON objects are left out)."""
    records = []
    for line in proc.log.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def test_a_client_gone_halfway_through_its_body_is_no_server_error(
    settings: Settings, json_edge: tuple[Process, str]
) -> None:
    proc, base = json_edge
    before = requests_counted(base)
    auth = bearer(settings)["Authorization"]
    head = (
        f"POST /v1/events HTTP/1.1\r\nHost: edge\r\nAuthorization: {auth}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {DECLARED}\r\n\r\n"
    ).encode()
    asyncio.run(cut_off(base, head, SENT))

    after = handled(proc, base, before, "/v1/events", "POST")
    assert answered(after, "/v1/events", "POST") == answered(before, "/v1/events", "POST") + 1
    assert server_errors(after) == server_errors(before), (after - before, proc.log_tail())
    assert after[("/v1/events", "POST", "400")] == before[("/v1/events", "POST", "400")] + 1, after - before

    records = assert_no_error_logged(proc)
    gone = [r for r in records if CLIENT_GONE in r.get("message", "")]
    assert [(r["level"], r["logger"]) for r in gone] == [("INFO", "ledgerflow.api.problems")], gone

    with httpx.Client(timeout=10) as client:  # the edge goes on answering
        assert client.get(f"{base}/healthz").status_code == 200
        posted = client.post(f"{base}/v1/events", json=turn("c-after-cut"), headers=bearer(settings))
        assert posted.status_code == 202, posted.text


def test_a_client_leaving_an_sse_stream_is_no_server_error(
    settings: Settings, json_edge: tuple[Process, str]
) -> None:
    proc, base = json_edge
    before = requests_counted(base)
    auth = bearer(settings)["Authorization"]
    head = f"GET /v1/streams/tenant HTTP/1.1\r\nHost: edge\r\nAuthorization: {auth}\r\n\r\n".encode()
    first = asyncio.run(leave_stream(base, head))
    assert first.startswith(b"HTTP/1.1 200 "), first

    after = handled(proc, base, before, "/v1/streams/tenant", "GET")
    assert server_errors(after) == server_errors(before), (after - before, proc.log_tail())
    assert_no_error_logged(proc)
    assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
