"""docs/auth.md runs, and ledgerflow.auth stays free of web frameworks."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "ledgerflow" / "auth"
FORBIDDEN = {"starlette", "uvicorn", "redis", "aiokafka", "faust", "ledgerflow.api"}


def python_blocks(doc: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.DOTALL)


def test_auth_doc_code_blocks_run_in_order() -> None:
    blocks = python_blocks(ROOT / "docs" / "auth.md")
    assert len(blocks) >= 4
    namespace: dict[str, object] = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"docs/auth.md block {index}", "exec"), namespace)


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_auth_module_imports_no_web_framework_or_broker(module: Path) -> None:
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            bad = {f for f in FORBIDDEN if name == f or name.startswith(f + ".")}
            assert not bad, f"{module.name} imports {name}: ledgerflow.auth must not depend on the edge"
