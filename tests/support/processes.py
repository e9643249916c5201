"""Helpers for the integration tests: real processes against the real stack."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledgerflow.chaos.evidence import live_keys, read_models_behind
from ledgerflow.config import Settings
from ledgerflow.demo import child_env
from ledgerflow.kafka.logs import count_records
from ledgerflow.netutil import free_port, wait_http_ready
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS

# free_port and wait_http_ready live in the package (the benchmark needs them too); re-exported here.
__all__ = [
    "Process",
    "free_port",
    "live_keys",
    "pipeline_settled",
    "running_edge",
    "start",
    "wait_http_ready",
]


@dataclass
class Process:
    """A ``ledgerflow`` subcommand running as a real child process."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(10)
        return self.popen.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start(
    settings: Settings, name: str, *args: str, log_dir: Path, extra_env: Mapping[str, str] | None = None
) -> Process:
    """``ledgerflow <args>`` as a child process with ``settings`` (and ``extra_env``) in its environment."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{name}-{int(time.time() * 1000)}.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow.cli", *args],
            env=child_env(settings) | {"PYTHONUNBUFFERED": "1"} | dict(extra_env or {}),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Process(name, popen, log)


@contextmanager
def running_edge(
    settings: Settings, log_dir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[Process, str]]:
    """``ledgerflow serve`` on a free port, ready (``extra_env``: variables of its own); yields the
    process and its base URL, stops it at the end. A start-up failure fails the test with the
    edge's log (never a skip)."""
    http = f"127.0.0.1:{free_port()}"
    proc = start(settings.with_overrides(http=http), "edge", "serve", log_dir=log_dir, extra_env=extra_env)
    base = f"http://{http}"
    try:
        try:
            wait_http_ready(proc, base)
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield proc, base
    finally:
        proc.stop()


async def pipeline_settled(settings: Settings, turns: int) -> tuple[bool, str]:
    """Whether every one of ``turns`` has a decision and the read models applied every record."""
    complete, behind, horizon = await read_models_behind(settings, (POLICY_DECISIONS, CONVERSATION_EVENTS))
    decisions = sum(horizon[settings.topic(POLICY_DECISIONS)])  # offsets: records and transaction markers
    if decisions >= turns:
        decisions = await count_records(settings, settings.topic(POLICY_DECISIONS))
    if decisions < turns:
        return False, f"{decisions} of {turns} decisions"
    return (
        complete and not behind,
        f"{decisions} decisions; read models behind on {behind[:3]} (complete={complete})",
    )
