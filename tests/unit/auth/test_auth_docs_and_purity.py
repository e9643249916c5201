"""docs/auth.md runs, and ledgerflow.auth stays free of web frameworks."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.sourcecheck import REPO, imported_modules, run_python_blocks

PACKAGE = REPO / "ledgerflow" / "auth"
FORBIDDEN = {"starlette", "uvicorn", "redis", "aiokafka", "faust", "ledgerflow.api"}


def test_auth_doc_code_blocks_run_in_order() -> None:
    assert run_python_blocks(REPO / "docs" / "auth.md") >= 4


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_auth_module_imports_no_web_framework_or_broker(module: Path) -> None:
    for name in imported_modules(module):
        bad = {f for f in FORBIDDEN if name == f or name.startswith(f + ".")}
        assert not bad, f"{module.name} imports {name}: ledgerflow.auth must not depend on the edge"
