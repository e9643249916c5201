"""A private Kafka + Redis for the tests that stop, pause or restart a service: their own free
ports and state directory, started by the same code as ``ledgerflow stack up`` and always
stopped at the end. The shared dev stack is never touched."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from ledgerflow.config import Settings
from ledgerflow.errors import LedgerflowError
from ledgerflow.netutil import free_port, free_port_run
from ledgerflow.stack import manage

__all__ = ["free_port_pair", "free_port_run", "private_settings", "private_stack"]


def free_port_pair() -> int:
    """A port p with p and p + 1 both free on 127.0.0.1 (Kafka and its KRaft controller)."""
    return free_port_run(2)


def private_settings(state_dir: Path, **overrides: str) -> Settings:
    """Settings for a private stack in ``state_dir`` on free ports (the edge's port too)."""
    base = Settings(
        kafka_bootstrap=f"127.0.0.1:{free_port_pair()}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        http=f"127.0.0.1:{free_port()}",
        state_dir=state_dir,
    )
    return base.with_overrides(**overrides) if overrides else base


@contextmanager
def private_stack(
    settings: Settings, say: Callable[[str], None] = lambda _: None
) -> Iterator[manage.StackNodes]:
    """Start Kafka and Redis of ``settings`` (a failure fails the test); at the end resume any
    node a test paused (a paused process ignores SIGTERM) and stop both."""
    nodes = manage.nodes(settings)
    try:
        try:
            manage.up(settings, say=say)
        except LedgerflowError as exc:
            pytest.fail(f"the private Kafka + Redis could not start: {exc}", pytrace=False)
        yield nodes
    finally:
        for node in (nodes.kafka, nodes.redis):
            pid = node.process.pid()
            if pid is not None:
                os.kill(pid, signal.SIGCONT)
        manage.down(settings, say=say)
