"""docs/auth.md runs. The purity of ledgerflow.auth is an import-linter contract (auth-not-edge
in pyproject.toml), checked by `make check`."""

from __future__ import annotations

from tests.support.sourcecheck import REPO, run_python_blocks


def test_auth_doc_code_blocks_run_in_order() -> None:
    assert run_python_blocks(REPO / "docs" / "auth.md") >= 4
