"""Checks the tests run over our own sources and docs: doc code blocks, imports.

Pure (reads files, runs nothing but the doc blocks it is asked to run).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


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


def imported_modules(source: Path) -> set[str]:
    """Every module a Python file imports (``import x.y`` and ``from x.y import …``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names
