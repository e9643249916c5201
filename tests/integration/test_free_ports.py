"""``netutil.free_port`` on this machine: ports below the kernel's ephemeral range that bind, and
never one another process was given. Binding port 0 (the old way) handed out ephemeral ports, on
which a client retrying a stopped broker could connect to itself and leave a TIME-WAIT that kept
the broker from binding its port again for ~60 s (flaky restart tests)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ledgerflow import netutil
from ledgerflow.stack import rediscluster

RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _ephemeral() -> tuple[int, int]:
    return netutil.ephemeral_range(RANGE_FILE.read_text() if RANGE_FILE.exists() else None)


def test_free_ports_are_below_the_ephemeral_range_and_bind() -> None:
    low, _ = _ephemeral()
    ports = [netutil.free_port() for _ in range(20)]
    assert len(set(ports)) == len(ports)  # never the same port twice in one process
    assert all(netutil.FLOOR <= p < low for p in ports), ports
    pair = netutil.free_port_run(2)
    cluster = netutil.free_port_run(rediscluster.NODE_COUNT, highest=rediscluster.MAX_PORT, also=10_000)
    assert pair + 1 < low and cluster + rediscluster.NODE_COUNT - 1 + 10_000 < low
    for port in [*ports, pair, pair + 1]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_another_process_was_given_is_not_given_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another test process took ports (and has not bound them yet): they are skipped here even
    though they bind, because that process holds their claims."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom ledgerflow.netutil import free_port\n"
            "print(*(free_port() for _ in range(5)), flush=True)\nsys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        theirs = [int(p) for p in child.stdout.readline().split()]
        assert len(theirs) == 5
        draws = iter(theirs)
        fresh = netutil._RANDOM.randint
        mine: list[int] = []

        def draw(low: int, high: int) -> int:
            port = next(draws, None)
            if port is None:  # theirs all refused: a fresh port
                port = fresh(low, high)
            mine.append(port)
            return port

        monkeypatch.setattr(netutil._RANDOM, "randint", draw)
        given = netutil.free_port()
        assert mine[:5] == theirs  # each was offered, and refused
        assert given not in theirs
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(10)
