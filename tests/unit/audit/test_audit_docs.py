"""docs/audit.md: its code runs, and the commands and finding kinds it lists exist."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.sourcecheck import run_python_blocks

ROOT = Path(__file__).resolve().parents[3]
DOC = ROOT / "docs" / "audit.md"
PACKAGE = ROOT / "ledgerflow" / "audit"


def test_audit_doc_python_blocks_run() -> None:
    assert run_python_blocks(DOC) >= 1


def test_every_finding_kind_in_the_code_is_documented() -> None:
    source = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.glob("*.py"))
    kinds = set(re.findall(r'"((?:chain|decision|training|projection|record|input|usage)\.[a-z-]+)"', source))
    kinds |= {f"decision.{w}" for w in re.findall(r'_finding\("([a-z-]+)"', source)}
    kinds |= {f"chain.{k}" for k in ("altered", "forged", "missing", "reordered", "duplicate", "bad-genesis")}
    doc = DOC.read_text(encoding="utf-8")
    undocumented = sorted(k for k in kinds if f"`{k}`" not in doc)
    assert len(kinds) > 12 and undocumented == []
