"""Local ports and HTTP readiness for the tools that start an edge as a child process.

The benchmark and the integration tests both start ``ledgerflow serve`` on a free port and
wait for it to answer; this is the part of that the package itself needs at run time.
"""

from __future__ import annotations

import contextlib
import random
import socket
import subprocess
import time
from typing import Any, Protocol

import httpx

__all__ = ["ChildProcess", "free_port", "free_port_run", "wait_http_ready"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def free_port_run(count: int, *, highest: int = 65_535, also: int = 0) -> int:
    """A port p with p … p + count - 1 all free on 127.0.0.1 (a local cluster's nodes), the last
    at most ``highest``; with ``also``, the ports ``also`` above each are free too (a Redis
    Cluster node's bus port)."""
    for _ in range(200):
        port = free_port() if highest >= 65_535 else random.randint(20_000, highest - count + 1)
        wanted = [port + i for i in range(count)] + ([port + i + also for i in range(count)] if also else [])
        if max(wanted) > 65_535 or port + count - 1 > highest:
            continue
        with contextlib.ExitStack() as held:
            try:
                for candidate in wanted:
                    s = held.enter_context(socket.socket())
                    s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no run of {count} free ports on 127.0.0.1 up to {highest}")


class ChildProcess(Protocol):
    name: str
    popen: subprocess.Popen[Any]

    def log_tail(self, lines: int = ...) -> str: ...


def wait_http_ready(proc: ChildProcess, base_url: str, timeout: float = 60.0) -> None:
    """Wait until ``base_url/readyz`` answers 200; fail early (with its log) if ``proc`` exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}:\n{proc.log_tail()}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{proc.name} not ready at {base_url} within {timeout} s:\n{proc.log_tail()}")
