"""Checks the tests run over our own docs: their code blocks run, in order.

Pure (reads files, runs nothing but the doc blocks it is asked to run).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def code_blocks(doc: Path, lang: str = "python") -> list[str]:
    """The fenced ``lang`` code blocks of a markdown file, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.DOTALL)


def run_python_blocks(doc: Path, namespace: dict[str, object] | None = None) -> int:
    """Run a doc's python blocks in order in one namespace; return how many ran."""
    namespace = {} if namespace is None else namespace
    blocks = code_blocks(doc)
    for index, block in enumerate(blocks):
        exec(compile(block, f"{doc.name} block {index}", "exec"), namespace)
    return len(blocks)
