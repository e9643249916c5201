"""docs/usage.md runs, and the usage core imports nothing but the standard library."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "ledgerflow" / "usage"
ALLOWED = {"__future__", "collections", "dataclasses", "functools", "math", "statistics", "typing"}


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_usage_doc_code_blocks_run_in_order() -> None:
    blocks = python_blocks(ROOT / "docs" / "usage.md")
    assert len(blocks) >= 5
    namespace: dict[str, object] = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/usage.md block {index}", "exec"), namespace)


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_usage_module_imports_only_stdlib_and_ledgerflow_errors(module: Path) -> None:
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
                or name.startswith("ledgerflow.usage")
            )
            assert ok, f"{module.name} imports {name}: the usage core must stay pure (no I/O, no clock)"
