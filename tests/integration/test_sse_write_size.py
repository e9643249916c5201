"""Subscribers that stop reading must not cost the edge a large write each (a real edge process).

Found by a probing review: a live write joined up to 256 queued frames whatever their size. The
frames are shared by every subscriber of a record, but each stream's joined write is its own, so
20 tenant streams whose clients stopped reading, during a burst of 256 turns of 65,000 characters
(about 130 KB of JSON each), took the edge's peak memory from 70 MB to about 725 MB when they let
go (each stream built its 33 MB write). A write now stops at 256 KiB of event data
(``streams.MAX_BYTES_PER_WRITE``); the same run peaks at about 130 MB.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from ledgerflow.config import Settings
from tests.support.processes import running_edge
from tests.support.turns import publish_turns

SUBSCRIBERS = 20
TURNS = 256
CONTENT = '"' * 65_000  # each quote is two bytes of JSON: a frame of about 130 KB
MAX_GROWTH_MB = 300  # the old edge grew by about 650 MB, the new one by about 60 MB


def _peak_rss_mb(pid: int) -> float:
    line = next(x for x in Path(f"/proc/{pid}/status").read_text().splitlines() if x.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def _stalled(port: int, token: str) -> socket.socket:
    """A tenant stream whose client reads nothing (a 4 KiB receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(
        f"GET /v1/streams/tenant HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def test_stalled_subscribers_of_a_burst_of_large_turns_do_not_each_build_a_large_write(
    settings: Settings, log_dir: Path, tokens
) -> None:
    token = tokens("acme", "subscriber")
    with running_edge(settings, log_dir, extra_env={"LEDGERFLOW_SSE_HEARTBEAT_S": "2"}) as (proc, base):
        port = int(base.rsplit(":", 1)[1])
        socks = [_stalled(port, token) for _ in range(SUBSCRIBERS)]
        try:
            time.sleep(1.0)
            before = _peak_rss_mb(proc.popen.pid)
            asyncio.run(publish_turns(settings, "big", TURNS, CONTENT))
            time.sleep(3.0)  # the frames reach every stream; each blocks on its full socket
        finally:
            for sock in socks:
                sock.close()
        time.sleep(3.0)  # the streams let go: each takes what is left in its mailbox
        growth = _peak_rss_mb(proc.popen.pid) - before
    assert growth < MAX_GROWTH_MB, f"the edge's peak memory grew by {growth:.0f} MB"
