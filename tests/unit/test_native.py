"""The compiled core's switch (ledgerflow/native.py): compiled only when every extension is current."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

from ledgerflow import native

SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]
MODULES = ("pkgx.a", "pkgx.sub.b")


def _tree(root: Path, *, built: tuple[str, ...] = MODULES) -> None:
    for module in MODULES:
        source = native.source_of(module, root)
        source.parent.mkdir(parents=True, exist_ok=True)
        (source.parent / "__init__.py").touch()
        source.write_text("WHERE = 'source'\n")
        os.utime(source, (1_000, 1_000))
    (root / "pkgx" / "__init__.py").touch()
    for module in built:
        source = native.source_of(module, root)
        extension = source.with_name(source.stem + SUFFIX)
        extension.write_bytes(b"not an extension")  # importing it fails: the finder must skip it
        os.utime(extension, (2_000, 2_000))


def test_current_extensions_are_used(tmp_path: Path) -> None:
    _tree(tmp_path)
    assert native.decide(MODULES, tmp_path, pure_requested=False) == native.Choice(True)


def test_asking_for_python_wins_over_a_current_build(tmp_path: Path) -> None:
    _tree(tmp_path)
    choice = native.decide(MODULES, tmp_path, pure_requested=True)
    assert not choice.compiled and not choice.stale and choice.reason == "LEDGERFLOW_PURE=1"


def test_nothing_built_is_python_without_a_warning(tmp_path: Path) -> None:
    _tree(tmp_path, built=())
    choice = native.decide(MODULES, tmp_path, pure_requested=False)
    assert not choice.compiled and not choice.stale


def test_a_source_edited_after_the_build_makes_every_module_python(tmp_path: Path) -> None:
    _tree(tmp_path)
    os.utime(native.source_of("pkgx.sub.b", tmp_path), (3_000, 3_000))
    choice = native.decide(MODULES, tmp_path, pure_requested=False)
    assert not choice.compiled and choice.stale
    assert choice.reason == f"{Path('pkgx/sub/b.py')} changed after it was compiled"


def test_a_module_missing_from_the_build_makes_every_module_python(tmp_path: Path) -> None:
    _tree(tmp_path, built=("pkgx.a",))
    choice = native.decide(MODULES, tmp_path, pure_requested=False)
    assert not choice.compiled and choice.stale and "pkgx.sub.b is not compiled" in choice.reason


def test_the_finder_loads_the_source_beside_an_extension(tmp_path: Path) -> None:
    _tree(tmp_path)
    finder = native._FromSource(MODULES, tmp_path)
    sys.path.insert(0, str(tmp_path))
    sys.meta_path.insert(0, finder)
    try:
        module = importlib.import_module("pkgx.sub.b")
        assert module.WHERE == "source" and module.__file__ == str(tmp_path / "pkgx" / "sub" / "b.py")
    finally:
        sys.meta_path.remove(finder)
        sys.path.remove(str(tmp_path))
        for name in [n for n in sys.modules if n == "pkgx" or n.startswith("pkgx.")]:
            del sys.modules[name]


def _imported_from(env: dict[str, str]) -> str:
    code = "import sys, ledgerflow.policy.wire; print(sys.modules['ledgerflow.policy.evaluate'].__file__)"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_this_checkout_runs_the_compiled_core() -> None:
    """`make test` builds the core first (make native), so the suite and the bench run what ships."""
    assert native.loaded(), f"the compiled core is not in use: {native.choose().reason}"
    env = {k: v for k, v in os.environ.items() if k != native.PURE_ENV}
    assert _imported_from(env).endswith(SUFFIX)
    assert _imported_from({**env, native.PURE_ENV: "1"}).endswith("evaluate.py")
