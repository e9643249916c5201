"""The compiled core: which modules `make native` compiles with mypyc, and when to use them.

The modules below are the per-record hot path (policy evaluation, the codec's glue, projection
ops and folding). ``scripts/build_native.py`` compiles them with mypyc into C extensions next to
their sources (``evaluate.cpython-311-…so`` beside ``evaluate.py``); Python then imports the
extension instead of the source. The sources stay the only truth: the same code runs as Python
when nothing is compiled.

A compiled module that is older than its source would run yesterday's code. So before any of them
is imported, :func:`choose` compares modification times and, if any compiled module is missing or
stale (or ``LEDGERFLOW_PURE=1`` asks for it), makes every module of the list load from its source,
with one line on stderr saying so. All or none: within one compiled group, modules call each other
through C, so mixing a source module with compiled neighbours would still run the stale ones.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

#: Compiled together as one group (``GROUP``). Not here, on purpose: modules whose frozen
#: dataclasses are deep-copied (``contracts.chain``); ``contracts.events`` and
#: ``contracts.eventhash``, whose property tests build events with values their annotations exclude
#: (compiled code refuses those at construction, with another error than the one compared);
#: modules that tests patch (the agents, ``policy.patterns``); ``policy.types``, whose
#: ``__post_init__`` checks answer a wrong type with a ValidationError (a 422), where compiled
#: construction would raise a TypeError first.
MODULES: tuple[str, ...] = (
    "ledgerflow.audit.decisions",
    "ledgerflow.audit.digests",
    "ledgerflow.contracts.avrobin",
    "ledgerflow.contracts.canonical",
    "ledgerflow.contracts.codec",
    "ledgerflow.contracts.ids",
    "ledgerflow.policy.budget",
    "ledgerflow.policy.detectors",
    "ledgerflow.policy.evaluate",
    "ledgerflow.policy.text",
    "ledgerflow.policy.wire",
    "ledgerflow.projections.conversations",
    "ledgerflow.projections.fold",
    "ledgerflow.projections.keys",
    "ledgerflow.projections.ops",
    "ledgerflow.projections.usage_fields",
    "ledgerflow.projections.verify",
    "ledgerflow.projections.writer",
)
GROUP = "ledgerflow._native"
PURE_ENV = "LEDGERFLOW_PURE"
ROOT = Path(__file__).resolve().parent.parent


def source_of(module: str, root: Path = ROOT) -> Path:
    return root.joinpath(*module.split(".")).with_suffix(".py")


def compiled_of(module: str, root: Path = ROOT) -> Path | None:
    """The extension file built for ``module``, if there is one."""
    source = source_of(module, root)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


@dataclass(frozen=True)
class Choice:
    compiled: bool
    reason: str = ""  # why not compiled
    stale: bool = False  # a build exists but does not match the sources: worth a line on stderr


def decide(modules: Sequence[str], root: Path, pure_requested: bool) -> Choice:
    """Compiled only if asked for nothing else and every module's extension is newer than its source."""
    if pure_requested:
        return Choice(False, f"{PURE_ENV}=1")
    built = {m: compiled_of(m, root) for m in modules}
    if not any(built.values()):
        return Choice(False, "not compiled (make native)")
    for module, extension in built.items():
        if extension is None:
            return Choice(False, f"{module} is not compiled", stale=True)
        if source_of(module, root).stat().st_mtime > extension.stat().st_mtime:
            changed = source_of(module, root).relative_to(root)
            return Choice(False, f"{changed} changed after it was compiled", stale=True)
    return Choice(True)


class _FromSource(importlib.abc.MetaPathFinder):
    """Finds the listed modules as their ``.py`` sources, ahead of the extension beside them."""

    def __init__(self, modules: Sequence[str], root: Path) -> None:
        self._modules = frozenset(modules)
        self._root = root

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self._modules:
            return None
        return importlib.util.spec_from_file_location(fullname, source_of(fullname, self._root))


_choice: Choice | None = None


def choose() -> Choice:
    """Decide once per process, before any listed module is imported; tell stderr if stale."""
    global _choice
    if _choice is None:
        _choice = decide(MODULES, ROOT, os.environ.get(PURE_ENV) == "1")
        if not _choice.compiled:
            sys.meta_path.insert(0, _FromSource(MODULES, ROOT))
            if _choice.stale:
                sys.stderr.write(f"ledgerflow: the hot path runs as Python: {_choice.reason}; make native\n")
    return _choice


def loaded() -> bool:
    """True when the compiled core is what this process runs."""
    return choose().compiled
