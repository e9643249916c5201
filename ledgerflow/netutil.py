"""Local ports and HTTP readiness for the tools that start an edge as a child process.

The benchmark and the integration tests both start ``ledgerflow serve`` on a free port and
wait for it to answer; this is the part of that the package itself needs at run time.
"""

from __future__ import annotations

import socket
import subprocess
import time
from typing import Any, Protocol

import httpx

__all__ = ["ChildProcess", "free_port", "wait_http_ready"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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
