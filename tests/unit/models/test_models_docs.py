"""docs/models.md runs, and its JSON pack is a valid rule pack."""

from __future__ import annotations

import re

from ledgerflow.policy import parse_rule_pack
from tests.support.sourcecheck import REPO, run_python_blocks

DOC = REPO / "docs" / "models.md"


def test_models_doc_code_blocks_run() -> None:
    assert run_python_blocks(DOC) >= 1


def test_models_doc_json_pack_is_valid() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks and all(parse_rule_pack(block).needs_models for block in blocks)
