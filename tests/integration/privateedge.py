"""A private Kafka + Redis with an edge in front, for tests that pause or stop a dependency under
the edge (the shared stack is never touched): ``world`` is a pytest fixture, imported by name."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from ledgerflow.config import Settings
from ledgerflow.stack import manage
from tests.integration import edgekit
from tests.support.privatestack import private_settings, private_stack
from tests.support.processes import Process, start, wait_http_ready

PACK = {"rules": [{"id": "r", "when": {"keywords": ["x"]}, "action": "review", "weight": 1}]}
CLIENT_TIMEOUT_S = 30.0


@dataclass
class World:
    settings: Settings
    nodes: manage.StackNodes
    edge: Process
    base: str

    def put(self) -> tuple[httpx.Response, float]:
        began = time.monotonic()
        resp = httpx.put(
            f"{self.base}/v1/policy/rules",
            json=PACK,
            headers=edgekit.bearer(self.settings, roles="admin"),
            timeout=CLIENT_TIMEOUT_S,
        )
        return resp, time.monotonic() - began

    def pid(self, which: str) -> int:
        pid = (self.nodes.kafka if which == "kafka" else self.nodes.redis).process.pid()
        assert pid is not None, f"the private {which} is not running"
        return pid


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = private_settings(tmp_path, topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    with private_stack(settings) as nodes:
        edge = start(settings, "edge", "serve", log_dir=tmp_path / "logs")
        try:
            base = f"http://{settings.http}"
            wait_http_ready(edge, base)
            yield World(settings, nodes, edge, base)
        finally:
            edge.stop()
