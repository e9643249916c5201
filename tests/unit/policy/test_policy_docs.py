"""docs/policy.md: its Python examples run, and its claims match the code."""

from __future__ import annotations

import re
from pathlib import Path

from ledgerflow.policy import rule_pack_schema
from ledgerflow.policy.detectors import DETECTORS
from tests.support.sourcecheck import run_python_blocks

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "policy.md"


def test_policy_doc_code_blocks_run_in_order() -> None:
    assert run_python_blocks(DOC) >= 4


def test_policy_doc_lists_every_condition_and_detector() -> None:
    text = DOC.read_text(encoding="utf-8")
    conditions = rule_pack_schema()["$defs"]["conditions"]["properties"]
    for name in list(conditions) + list(DETECTORS):
        assert f"`{name}" in text, f"docs/policy.md does not document {name!r}"


def test_policy_doc_json_examples_are_valid_packs() -> None:
    from ledgerflow.policy import parse_rule_pack

    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks
    for block in blocks:
        assert parse_rule_pack(block).rules
