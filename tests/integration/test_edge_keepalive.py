"""The edge keeps an idle HTTP/1.1 connection open longer than clients reuse one.

httpx (and so ``ledgerflow.client``) reuses an idle pooled connection for up to 5 s; uvicorn's
default closes one after 5 s idle. With equal timeouts a request sent as the edge closes the
connection is lost with no answer at all (``Server disconnected without sending a response``):
the chaos run met it with the machine's cores saturated. The edge now keeps idle connections
for ``KEEP_ALIVE_S``, so the client always gives up on a connection first.
"""

from __future__ import annotations

import socket
import time
from urllib.parse import urlsplit

CLIENT_KEEPALIVE_S = 5.0  # httpx.Limits().keepalive_expiry, the default of every httpx client


def _exchange(sock: socket.socket, host: str) -> bytes:
    """One GET /healthz on ``sock``; the whole answer, or b"" if the edge had closed the connection."""
    sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    answer = b""
    while b"\r\n\r\n" not in answer:
        chunk = sock.recv(65536)
        if not chunk:
            return answer
        answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_an_idle_connection_outlives_the_clients_keepalive(edge: str) -> None:
    url = urlsplit(edge)
    assert url.hostname is not None and url.port is not None
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        assert _exchange(sock, url.netloc).startswith(b"HTTP/1.1 200")
        time.sleep(CLIENT_KEEPALIVE_S + 1.5)  # idle longer than uvicorn's default 5 s, shorter than ours
        again = _exchange(sock, url.netloc)
    assert again.startswith(b"HTTP/1.1 200"), f"the edge closed an idle connection within 6.5 s: {again!r}"
