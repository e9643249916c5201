"""docs/training.md runs, and the training core imports nothing but the standard library."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "ledgerflow" / "training"
ALLOWED = {"__future__", "collections", "dataclasses", "functools", "typing"}


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_training_doc_code_blocks_run_in_order() -> None:
    blocks = python_blocks(ROOT / "docs" / "training.md")
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/training.md block {index}", "exec"), namespace)


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_training_module_imports_only_stdlib_and_ledgerflow_errors(module: Path) -> None:
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            ok = (
                name.split(".")[0] in ALLOWED
                or name in {"ledgerflow.errors"}
                # the contracts package is pure too (its own test checks it): wire.py maps to it
                or name.startswith("ledgerflow.contracts")
                or name.startswith("ledgerflow.training")
            )
            assert ok, f"{module.name} imports {name}: the training core must stay pure (no I/O, no clock)"
