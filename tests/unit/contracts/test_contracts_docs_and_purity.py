"""docs/contracts.md runs. The purity of ledgerflow.contracts is declared as import-linter contracts
(pure-cores-no-io, pure-cores-no-clock in pyproject.toml), checked by `make check`."""

from __future__ import annotations

from tests.support.sourcecheck import REPO, run_python_blocks


def test_contracts_doc_code_blocks_run_in_order() -> None:
    assert run_python_blocks(REPO / "docs" / "contracts.md") >= 3
