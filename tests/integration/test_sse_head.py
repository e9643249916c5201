"""``HEAD`` on an SSE stream, on a real edge: the stream's status and headers, then the answer ends.

Before: Starlette answers HEAD on a GET route with the GET handler, so a HEAD opened a real stream
(a tenant stream slot, a hub subscription) whose frames uvicorn drops (no body for HEAD): the
response never ended. A keep-alive client's next request on that connection was never answered, and
once it was pipelined (the edge paused reading) a client that left was not noticed either: its slot
and subscription stayed until the token expired (up to 24 h; 2,000 such requests hold every stream
slot of the tenant)."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from ledgerflow.config import Settings
from tests.integration.edgekit import token

HEAD_PATHS = ["/v1/streams/tenant", "/v1/conversation/stream?conversation_id=c-1"]


def _subscribers(edge: str) -> float:
    text = httpx.get(f"{edge}/metrics", timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith("ledgerflow_sse_subscribers "))
    return float(line.split()[1])


def _read_until(sock: socket.socket, marker: bytes, seconds: float) -> bytes:
    got, deadline = b"", time.monotonic() + seconds
    while marker not in got and time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            break
        if not chunk:
            break
        got += chunk
    return got


@pytest.mark.parametrize("path", HEAD_PATHS)
def test_head_on_a_stream_answers_its_headers_and_ends(settings: Settings, edge: str, path: str) -> None:
    bearer = f"Bearer {token(settings, 'alice', roles='subscriber')}"
    head = httpx.head(edge + path, headers={"Authorization": bearer}, timeout=5)
    assert head.status_code == 200, head.text
    assert head.headers["content-type"].startswith("text/event-stream")
    assert head.headers["cache-control"] == "no-store" and "ledgerflow-constitution" in head.headers
    # The same refusals as GET: no token, no subscriber role.
    assert httpx.head(edge + path, timeout=5).status_code == 401
    producer = f"Bearer {token(settings, 'carol', roles='producer')}"
    assert httpx.head(edge + path, headers={"Authorization": producer}, timeout=5).status_code == 403
    # A keep-alive client's next request on the connection is answered.
    host, port = edge.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: edge\r\nAuthorization: {bearer}\r\n\r\n".encode())
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n")
        answers = _read_until(sock, b'"ok"', 5)
        assert answers.count(b"HTTP/1.1 200 OK") == 2, answers[:400]
    # Nothing is left open: no subscriber, no stream slot.
    deadline = time.monotonic() + 5
    while _subscribers(edge) != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _subscribers(edge) == 0
