"""docs/client.md runs, in order, against the real stack, a worker and an edge; the README shows
the same five lines. The examples name the edge's default address in the first block (replaced
by this test's edge) and take everything else from the environment, as a user's shell would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ledgerflow.config import Settings
from tests.support.processes import Process
from tests.support.sourcecheck import code_blocks

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "client.md"


def test_the_readme_shows_the_docs_five_lines() -> None:
    five = code_blocks(DOC)[0]
    assert len(five.strip().splitlines()) == 5
    assert f"```python\n{five}```" in (ROOT / "README.md").read_text()


def test_the_client_docs_run_against_the_stack(
    settings: Settings, worker: Process, edge: str, tokens, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("LEDGERFLOW_EDGE", edge)
    monkeypatch.setenv("LEDGERFLOW_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("LEDGERFLOW_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("TOKEN", tokens("acme", "producer,subscriber"))
    blocks = code_blocks(DOC)
    assert len(blocks) >= 5 and "http://127.0.0.1:8700" in blocks[0]
    namespace: dict[str, object] = {"TOKEN": os.environ["TOKEN"]}
    for index, block in enumerate(blocks):
        code = block.replace('"http://127.0.0.1:8700"', repr(edge)) if index == 0 else block
        exec(compile(code, f"{DOC.name} block {index}", "exec"), namespace)
