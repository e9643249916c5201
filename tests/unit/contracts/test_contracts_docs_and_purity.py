"""docs/contracts.md runs, and the contracts import no Kafka, Redis or HTTP library."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "ledgerflow" / "contracts"
FORBIDDEN = {"aiokafka", "faust", "redis", "starlette", "uvicorn", "httpx", "kafka", "random", "time"}


def test_contracts_doc_code_blocks_run_in_order() -> None:
    text = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/contracts.md block {index}", "exec"), namespace)


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_contracts_module_does_no_io_and_reads_no_clock(module: Path) -> None:
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            assert name.split(".")[0] not in FORBIDDEN, f"{module.name} imports {name}"
