"""Detached child processes with pid files: start, find, stop, and wait for ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ledgerflow.errors import StackError


@dataclass(frozen=True, slots=True)
class Managed:
    """A process we started: its name, pid file and markers (one must be in its command line).

    The markers guard against a recycled pid: we never signal a process that is not ours.
    """

    name: str
    pid_file: Path
    markers: tuple[str, ...]

    def pid(self) -> int | None:
        """The pid if the process recorded in the pid file is alive and still ours."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        for _ in range(3):  # a program rewriting its title (redis-server) is briefly unreadable
            if not _alive(pid):
                return None
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except FileNotFoundError:
                return None
            if any(m.encode() in cmdline for m in self.markers):
                return pid
            time.sleep(0.05)
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def spawn(
    proc: Managed,
    argv: Sequence[str],
    log_file: Path,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> int:
    """Start ``argv`` in its own session, output to ``log_file``; record its pid."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as log:
        child = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    proc.pid_file.parent.mkdir(parents=True, exist_ok=True)
    proc.pid_file.write_text(f"{child.pid}\n")
    return child.pid


def stop(proc: Managed, timeout: float = 30.0) -> bool:
    """SIGTERM the process (SIGKILL after ``timeout``); True if something was stopped."""
    return bool(stop_all((proc,), timeout))


def stop_all(procs: Sequence[Managed], timeout: float = 30.0) -> list[Managed]:
    """SIGTERM every process at once, then wait for all (SIGKILL those left after ``timeout``);
    return those stopped. At once, because a KRaft node shuts down cleanly only while a
    quorum of its controllers still runs: one by one, the last would wait for the timeout."""
    running = [(proc, pid) for proc in procs if (pid := proc.pid()) is not None]
    for proc in procs:
        if proc.pid() is None:
            proc.pid_file.unlink(missing_ok=True)
    for _, pid in running:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for _, pid in running) and time.monotonic() < deadline:
        for _, pid in running:
            _reap(pid)
        time.sleep(0.1)
    for _, pid in running:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                _reap(pid)
                time.sleep(0.05)
    for proc, _ in running:
        proc.pid_file.unlink(missing_ok=True)
    return [proc for proc, _ in running]


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def wait_for_port(host: str, port: int, timeout: float, proc: Managed, log_file: Path, pid: int) -> None:
    """Wait until ``host:port`` accepts connections; fail early if process ``pid`` died.

    Liveness is checked on the pid itself, not through ``proc``'s command-line markers:
    a starting program may rewrite its process title (redis-server does) mid-check.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_in_use(host, port):
            return
        _reap(pid)
        if not _alive(pid):
            raise StackError(f"{proc.name} exited during start-up: {last_line(log_file)} (log: {log_file})")
        time.sleep(0.2)
    raise StackError(
        f"{proc.name} did not open {host}:{port} within {timeout:.0f} s: {last_line(log_file)} "
        f"(log: {log_file})"
    )


def last_line(path: Path) -> str:
    """The last non-blank line of a log, for a one-line error (the whole log stays on disk)."""
    lines = [line for line in tail(path, 50).splitlines() if line.strip()]
    return lines[-1].strip() if lines else "(no log written)"


def tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text[-lines:])
