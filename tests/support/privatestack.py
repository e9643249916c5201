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


def _free_port_besides(taken: set[int]) -> int:
    """A free port not in ``taken``: a free port is only probed, not held, so two asked one after
    the other may be the same (a CI run gave Kafka and Redis both 37921)."""
    while (port := free_port()) in taken:
        pass
    taken.add(port)
    return port


def private_settings(state_dir: Path, **overrides: str) -> Settings:
    """Settings for a private stack in ``state_dir`` on free ports, all distinct (the edge's too)."""
    kafka = free_port_pair()
    taken = {kafka, kafka + 1}
    base = Settings(
        kafka_bootstrap=f"127.0.0.1:{kafka}",
        redis_url=f"redis://127.0.0.1:{_free_port_besides(taken)}/0",
        http=f"127.0.0.1:{_free_port_besides(taken)}",
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
