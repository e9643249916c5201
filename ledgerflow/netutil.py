"""Local ports and HTTP readiness for the tools that start an edge as a child process.

The benchmark and the integration tests both start ``ledgerflow serve`` on a free port and
wait for it to answer; this is the part of that the package itself needs at run time.

Free ports are drawn **below the kernel's ephemeral range** (``/proc/sys/net/ipv4/ip_local_port_range``,
32768–60999 by default on Linux), not by binding port 0, which hands out a port inside it. A
client that retries a stopped broker on an ephemeral port can be given that very port as its
own source port and connect to itself (a TCP self-connect: SYN to its own port, simultaneous
open); the socket then lingers in TIME-WAIT for ~60 s and the broker cannot bind its port again
— restart tests failed that way. Outside the ephemeral range the kernel never picks the port as
a source port, so that cannot happen. Each port is still checked by binding it, and claimed with
a lock file (``flock``) that this process holds, so concurrent test processes drawing from the
same pool never hand out the same port.
"""

from __future__ import annotations

import collections
import contextlib
import fcntl
import os
import random
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

__all__ = [
    "ChildProcess",
    "choose_port",
    "ephemeral_range",
    "free_port",
    "free_port_run",
    "port_pool",
    "run_starts",
    "wait_http_ready",
]

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
DEFAULT_EPHEMERAL = (32_768, 65_535)
"""Without /proc (macOS, BSD): Linux's default start and IANA's end (49152–65535), so the pool is
below either."""
FLOOR = 10_000  # below this, well-known and registered services crowd
MIN_POOL = 1_000  # a stretch outside the ephemeral range smaller than this is not worth using
TOP = 65_535
ATTEMPTS = 500
HELD_CLAIMS = 256  # lock files this process keeps; the oldest claim is released past that
LOCK_DIR = Path(tempfile.gettempdir()) / "ledgerflow-ports"

Range = tuple[int, int]  # inclusive


def ephemeral_range(text: str | None) -> Range:
    """Pure: the ephemeral range from the text of ``ip_local_port_range`` ("32768\t60999"); the
    default when there is no such file (None) or it does not read as two ports, low first."""
    try:
        low, high = (int(x) for x in (text or "").split())
    except ValueError:
        return DEFAULT_EPHEMERAL
    return (low, high) if 1 <= low <= high <= TOP else DEFAULT_EPHEMERAL


def port_pool(ephemeral: Range, floor: int = FLOOR, top: int = TOP) -> Range:
    """Pure: where free ports are drawn: the larger stretch of ``floor``…``top`` below or above
    the ephemeral range; all of it when neither stretch holds ``MIN_POOL`` ports (an ephemeral
    range that covers nearly everything: nothing better is left)."""
    low, high = ephemeral
    below, above = (floor, min(low - 1, top)), (max(high + 1, floor), top)
    best = max(below, above, key=lambda r: r[1] - r[0])
    return best if best[1] - best[0] + 1 >= MIN_POOL else (floor, top)


def run_starts(pool: Range, count: int, highest: int = TOP, also: int = 0) -> Range:
    """Pure: the first ports ``p`` of a run ``p`` … ``p + count - 1`` (and, with ``also``, the
    ports ``also`` above each) inside ``pool`` and at most ``highest``. When the ``also`` ports
    cannot fit in the pool as well, only the run itself is kept in it; when not even that fits,
    the run is anywhere from ``FLOOR`` up to ``highest``."""
    low, high = pool
    for top in (min(high - also, highest) if also else min(high, highest), min(high, highest)):
        if top - count + 1 >= low:
            return (low, top - count + 1)
    return (FLOOR, highest - count + 1)


def choose_port(
    starts: Range,
    count: int,
    also: int,
    draw: Callable[[int, int], int],
    usable: Callable[[list[int]], bool],
    attempts: int = ATTEMPTS,
) -> int | None:
    """Draw a first port in ``starts`` until ``usable`` accepts the run it begins (its ``count``
    ports and, with ``also``, the ports ``also`` above each); None after ``attempts`` draws."""
    for _ in range(attempts):
        port = draw(*starts)
        wanted = [port + i for i in range(count)] + ([port + i + also for i in range(count)] if also else [])
        if max(wanted) <= TOP and usable(wanted):
            return port
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1, below the ephemeral range, that nothing uses right now and no
    other caller of ``free_port`` has been given."""
    return free_port_run(1)


def free_port_run(count: int, *, highest: int = TOP, also: int = 0) -> int:
    """A port p with p … p + count - 1 all free on 127.0.0.1 (a local cluster's nodes), the last
    at most ``highest``; with ``also``, the ports ``also`` above each are free too (a Redis
    Cluster node's bus port). Drawn below the ephemeral range (module docstring)."""
    starts = run_starts(_pool(), count, highest, also)
    port = choose_port(starts, count, also, _RANDOM.randint, _usable)
    if port is None:
        raise RuntimeError(
            f"no run of {count} free ports on 127.0.0.1 in {starts[0]}-{starts[1] + count - 1}"
        )
    return port


def _pool() -> Range:
    try:
        text: str | None = EPHEMERAL_RANGE_FILE.read_text()
    except OSError:
        text = None
    return port_pool(ephemeral_range(text))


_RANDOM = random.SystemRandom()  # not seeded from the clock: processes started together draw apart
_claims: collections.deque[tuple[int, int]] = collections.deque()  # (port, lock fd), oldest first


def _usable(ports: list[int]) -> bool:
    """Every port binds on 127.0.0.1 now (nothing listens, no connection or TIME-WAIT holds it)
    and is claimed for this process."""
    with contextlib.ExitStack() as held:
        try:
            for port in ports:
                held.enter_context(socket.socket()).bind(("127.0.0.1", port))
        except OSError:
            return False
    claimed: list[tuple[int, int]] = []
    for port in ports:
        fd = _claim(port)
        if fd is None:
            for _, other in claimed:
                os.close(other)
            return False
        claimed.append((port, fd))
    _claims.extend(claimed)
    while len(_claims) > HELD_CLAIMS:
        os.close(_claims.popleft()[1])
    return True


def _claim(port: int) -> int | None:
    """An open lock file of ``port`` this process holds an exclusive ``flock`` on (released when
    the process ends); None when another process holds it or this one already handed it out. A
    lock directory that cannot be used (a read-only /tmp) claims nothing and refuses nothing: an
    open /dev/null stands in for the lock."""
    if any(p == port for p, _ in _claims):
        return None
    try:
        LOCK_DIR.mkdir(mode=0o777, exist_ok=True)
        fd = os.open(LOCK_DIR / f"{port}.lock", os.O_CREAT | os.O_RDWR, 0o666)
    except OSError:
        return os.open(os.devnull, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


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
