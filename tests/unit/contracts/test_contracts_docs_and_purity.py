"""docs/contracts.md runs, and the contracts import no Kafka, Redis or HTTP library."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.sourcecheck import REPO, imported_modules, run_python_blocks

PACKAGE = REPO / "ledgerflow" / "contracts"
FORBIDDEN = {"aiokafka", "faust", "redis", "starlette", "uvicorn", "httpx", "kafka", "random", "time"}


def test_contracts_doc_code_blocks_run_in_order() -> None:
    assert run_python_blocks(REPO / "docs" / "contracts.md") >= 3


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_contracts_module_does_no_io_and_reads_no_clock(module: Path) -> None:
    for name in imported_modules(module):
        assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"
