"""Child processes of a benchmark and the CPU time every one of them used.

Every measured component runs as its own OS process (load generator, worker, passthrough,
edge, SSE clients), started with ``python -m <module>`` in a scratch working directory
(faust writes its data directory there). CPU time is read from ``/proc/<pid>/stat``
(utime + stime, all threads), so it can be read for any process, ours or the broker's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ledgerflow
from ledgerflow.config import Settings, child_env

_TICKS = os.sysconf("SC_CLK_TCK")
_PACKAGE_ROOT = str(Path(ledgerflow.__file__).resolve().parents[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of ``pid`` so far (None if it is gone or unreadable)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # fields 14 and 15 of proc(5)


@dataclass
class CpuMeter:
    """CPU seconds used by named processes between ``start()`` and ``stop()``."""

    pids: dict[str, int]
    _before: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def start(self) -> CpuMeter:
        self._before = {n: v for n, p in self.pids.items() if (v := cpu_seconds(p)) is not None}
        return self

    def stop(self) -> dict[str, float]:
        for name, before in self._before.items():
            now = cpu_seconds(self.pids[name])
            if now is not None:
                self.used[name] = now - before
        return self.used


def stack_pids(settings: Settings) -> dict[str, int]:
    """Broker and Redis pids, as ``ledgerflow stack status --json`` reports them.

    When the status has none (services started from another state directory), the
    process listening on the bootstrap / Redis port on this machine, if any.
    """
    from urllib.parse import urlparse

    from ledgerflow.stack import manage

    info = manage.status(settings)
    ports = {
        "kafka": int(settings.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1]),
        "redis": urlparse(settings.redis_url).port or 6379,
    }
    pids = {}
    for name in ("kafka", "redis"):
        pid = info[name]["pid"] or listener_pid(ports[name])  # type: ignore[index]
        if pid:
            pids[name] = int(pid)
    return pids


def listener_pid(port: int) -> int | None:
    """The pid of the local process listening on TCP ``port`` (None if not found or not ours to see)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(proc.name)
        except OSError:
            continue
    return None


@dataclass
class Child:
    """A benchmark child process whose stdout carries JSON lines (one object each)."""

    name: str
    popen: subprocess.Popen[str]
    log: Path
    lines: list[dict[str, Any]] = field(default_factory=list)
    _cond: threading.Condition = field(default_factory=threading.Condition)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for raw in self.popen.stdout:
            raw = raw.strip()
            if not raw.startswith("{"):
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                continue
            with self._cond:
                self.lines.append(obj)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, key: str, timeout: float) -> dict[str, Any]:
        """The first JSON line that has ``key``; RuntimeError if the process ends or time runs out."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for obj in self.lines:
                    if key in obj:
                        return obj
                if self.popen.poll() is not None and not self._reader_alive():
                    raise RuntimeError(
                        f"{self.name} exited with {self.popen.returncode} before "
                        f"reporting {key!r}:\n{self.log_tail()}"
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(
                        f"{self.name} did not report {key!r} within {timeout:.0f} s:\n{self.log_tail()}"
                    )
                self._cond.wait(min(left, 0.5))

    def _reader_alive(self) -> bool:
        return any(t.name == f"pump-{self.pid}" and t.is_alive() for t in threading.enumerate())

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the process to finish and return its ``result`` line."""
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
        result: dict[str, Any] = self.wait_line("result", 5.0)["result"]
        return result

    def stop(self, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(
    settings: Settings,
    name: str,
    module: str,
    args: Iterable[str],
    *,
    work_dir: Path,
    extra_env: Mapping[str, str] | None = None,
) -> Child:
    """``python -m module args`` with ``settings`` in its environment; stderr to a log file."""
    work_dir.mkdir(parents=True, exist_ok=True)
    log = work_dir / f"{name}-{time.time_ns() // 1_000_000}.log"
    env = child_env(settings) | {"PYTHONUNBUFFERED": "1"} | dict(extra_env or {})
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH", "")) if p)
    with open(log, "w") as err:
        popen = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            env=env,
            cwd=work_dir,
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
    child = Child(name, popen, log)
    threading.Thread(target=child._pump, name=f"pump-{popen.pid}", daemon=True).start()
    return child


def emit(**obj: Any) -> None:
    """Write one JSON line to stdout (how a child reports to the orchestrator)."""
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system
