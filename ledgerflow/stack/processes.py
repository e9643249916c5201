"""Detached child processes with pid files: start, find, stop, and wait for ports.

A pid file holds ``PID START`` (``START``: the process's start time, field 22 of
``/proc/PID/stat``, in clock ticks since boot). A pid is ours only while a process with that
pid *and* that start time runs: a pid recycled for another process after ours died has
another start time, so ``stack down`` never signals it. A file without a start time (written
by an older ledgerflow) or with anything else in it names no process of ours.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ledgerflow.digits import ascii_digits
from ledgerflow.errors import StackError

_START_FIELD = 22
"""``starttime`` in proc(5)'s numbering of ``/proc/PID/stat``, whose field 3 (the state)
is the first after the parenthesised command name."""


@dataclass(frozen=True, slots=True)
class PidRecord:
    """What a pid file says: the pid and the start time of the process it was written for."""

    pid: int
    start: int


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of ``/proc/PID/stat`` we use: the state letter (``Z``: a zombie) and the start time."""

    state: str
    start: int


def parse_pid_file(text: str) -> PidRecord | None:
    """``PID START`` (ASCII digits, pid above 0); None for anything else (empty, garbage, an
    older pid-only file, negative or extra fields)."""
    fields = text.split()
    if len(fields) != 2 or not all(ascii_digits(f) for f in fields):
        return None
    pid, start = int(fields[0]), int(fields[1])
    return PidRecord(pid, start) if 0 < pid < 2**31 else None


def format_pid_file(record: PidRecord) -> str:
    return f"{record.pid} {record.start}\n"


def parse_stat(text: str) -> ProcStat | None:
    """The state and start time from ``/proc/PID/stat`` text; None if it is not such a line.

    The command name (field 2) is in parentheses and may itself hold spaces and ``)``: the
    fields after it are split from the *last* ``)``.
    """
    head, paren, rest = text.rpartition(")")
    fields = rest.split()
    if not paren or "(" not in head or len(fields) < _START_FIELD - 2:
        return None
    start = fields[_START_FIELD - 3]
    if not ascii_digits(start):
        return None
    return ProcStat(fields[0], int(start))


def is_ours(record: PidRecord, stat: ProcStat | None) -> bool:
    """Whether the process now at ``record.pid`` (its ``stat``; None: no such process) is the one
    the pid file was written for, still running (a zombie has exited)."""
    return stat is not None and stat.state != "Z" and stat.start == record.start


def read_stat(pid: int) -> ProcStat | None:
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text(errors="replace"))
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def read_pid_file(path: Path) -> PidRecord | None:
    try:
        return parse_pid_file(path.read_text(errors="replace"))
    except (FileNotFoundError, IsADirectoryError):
        return None


def record(pid_file: Path, pid: int) -> None:
    """Write ``pid_file`` for the running process ``pid`` (with its start time)."""
    stat = read_stat(pid)
    if stat is None:
        raise StackError(f"process {pid} exited before its pid file {pid_file} was written")
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = pid_file.with_name(pid_file.name + ".tmp")
    tmp.write_text(format_pid_file(PidRecord(pid, stat.start)))
    tmp.replace(pid_file)  # a reader never sees half a file


def subdirectories(state_dir: Path) -> list[str]:
    """The names of ``state_dir``'s directories (none when it does not exist yet)."""
    return [p.name for p in state_dir.iterdir() if p.is_dir()] if state_dir.is_dir() else []


def remove_state(state_dir: Path, names: list[str]) -> None:
    """Remove the stopped services' directories ``names`` of ``state_dir``; a symlink is unlinked,
    never followed (its target is not ours to delete)."""
    for name in names:
        path = state_dir / name
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path)


@dataclass(frozen=True, slots=True)
class Managed:
    """A process we started: its name, pid file and markers (one must be in its command line).

    The pid file's start time tells our process from a later one given the same pid; the
    markers also tell one state directory's services from another's.
    """

    name: str
    pid_file: Path
    markers: tuple[str, ...]

    def pid(self) -> int | None:
        """The pid if the process recorded in the pid file is alive and still ours."""
        found = read_pid_file(self.pid_file)
        if found is None:
            return None
        return found.pid if self._marked(found.pid, lambda: is_ours(found, read_stat(found.pid))) else None

    def unverified_pid(self) -> int | None:
        """The pid of a pid-only file (an older ledgerflow's, no start time) whose process runs
        and carries our marker: perhaps ours, perhaps a recycled pid; never signalled."""
        try:
            text = self.pid_file.read_text(errors="replace").strip()
        except (FileNotFoundError, IsADirectoryError):
            return None
        if not ascii_digits(text) or not 0 < int(text) < 2**31:
            return None
        pid = int(text)
        return pid if self._marked(pid, lambda: _alive(pid)) else None

    def _marked(self, pid: int, alive: Callable[[], bool]) -> bool:
        for _ in range(3):  # a program rewriting its title (redis-server) is briefly unreadable
            if not alive():
                return False
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            except FileNotFoundError:
                return False
            if any(m.encode() in cmdline for m in self.markers):
                return True
            time.sleep(0.05)
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = read_stat(pid)
    return stat is not None and stat.state != "Z"


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
    record(proc.pid_file, child.pid)  # not reaped yet: the pid cannot have been recycled
    return child.pid


def stop(proc: Managed, timeout: float = 30.0) -> bool:
    """SIGTERM the process (SIGKILL after ``timeout``); True if something was stopped."""
    return bool(stop_all((proc,), timeout))


def stop_all(procs: Sequence[Managed], timeout: float = 30.0) -> list[Managed]:
    """SIGTERM every process at once, then wait for all (SIGKILL those left after ``timeout``);
    return those stopped. At once, because a KRaft node shuts down cleanly only while a
    quorum of its controllers still runs: one by one, the last would wait for the timeout."""
    running = [(proc, found) for proc in procs if (found := _running(proc)) is not None]
    for proc in procs:
        if proc.pid() is None and proc.unverified_pid() is None:  # the latter kept: `down` names it
            proc.pid_file.unlink(missing_ok=True)
    for _, found in running:
        os.kill(found.pid, signal.SIGTERM)
    # Waited for by pid *and* start time: once ours has exited its pid may be given to another
    # process while another of ``procs`` still stops, and that one must not get the SIGKILL.
    deadline = time.monotonic() + timeout
    while any(_still(found) for _, found in running) and time.monotonic() < deadline:
        for _, found in running:
            _reap(found.pid)
        time.sleep(0.1)
    for _, found in running:
        if _still(found):
            os.kill(found.pid, signal.SIGKILL)
            while _still(found):
                _reap(found.pid)
                time.sleep(0.05)
    for proc, _ in running:
        proc.pid_file.unlink(missing_ok=True)
    return [proc for proc, _ in running]


def _running(proc: Managed) -> PidRecord | None:
    """``proc``'s pid file when the process it names runs and is ours (``Managed.pid``)."""
    found = read_pid_file(proc.pid_file)
    return found if found is not None and proc.pid() == found.pid else None


def _still(found: PidRecord) -> bool:
    """Whether the process a pid file was written for still runs (not a later one at its pid)."""
    return is_ours(found, read_stat(found.pid))


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


BIND_WAIT_S = 5.0
"""How long a start waits for a port that nothing listens on but that cannot be bound yet (a
connection on it still closing) before it says so."""


def wait_bindable(
    host: str,
    port: int,
    what: str,
    within: float | None = None,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Return once ``host:port`` can be bound as a server binds it (``SO_REUSEADDR``), trying for
    ``within`` seconds (default ``BIND_WAIT_S``); then one line (StackError). Called after the
    check that nothing listens there: what is left is a socket bound without listening, or a
    connection still closing. A connection in TIME-WAIT made by a client without
    ``SO_REUSEADDR`` — one that retried the stopped server on this port and connected to itself —
    blocks the server's bind for ~60 s: a server started then exits at once, "Address already in
    use" in its log."""
    within = BIND_WAIT_S if within is None else within
    deadline = clock() + within
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
                return
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    return  # not this check's business (an address of another family…): the server says
        if clock() >= deadline:
            raise StackError(
                f"port {port} on {host} ({what}) is still in use after {within:g} s though nothing "
                "listens on it: a socket is bound there, or a connection on it is closing (TIME-WAIT "
                "lasts up to 60 s, e.g. after a client retrying the stopped server connected to "
                "itself); start again in a minute, or use another port"
            )
        sleep(0.2)


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
