"""docs/training.md runs, and the training core imports nothing but the standard library."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.sourcecheck import REPO, imported_modules, run_python_blocks

PACKAGE = REPO / "ledgerflow" / "training"
ALLOWED = {"__future__", "collections", "dataclasses", "functools", "typing"}


def test_training_doc_code_blocks_run_in_order() -> None:
    assert run_python_blocks(REPO / "docs" / "training.md") >= 3


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_training_module_imports_only_stdlib_and_ledgerflow_errors(module: Path) -> None:
    for name in imported_modules(module):
        ok = (
            name.split(".")[0] in ALLOWED
            or name == "ledgerflow.errors"
            # the contracts package is pure too (its own test checks it): wire.py maps to it
            or name.startswith(("ledgerflow.contracts", "ledgerflow.training"))
        )
        assert ok, f"{module.name} imports {name}: the training core must stay pure (no I/O, no clock)"
