"""Compile the hot path (``ledgerflow.native.MODULES``) with mypyc, in place; no-op when up to date.

Run by `make native` (and so by `make test`, `make demo`, `make bench`). Needs a C compiler and
Python's headers; mypyc comes with mypy from the test extras. ``--clean`` removes the extensions
(the same code then runs as Python).
"""

from __future__ import annotations

import importlib.machinery
import shutil
import sys
import sysconfig
import time
from pathlib import Path

from ledgerflow import native

BUILD_DIR = native.ROOT / ".native-build"


def _extensions() -> list[Path]:
    """Every extension under the package, listed or not: one left by an earlier, longer list would
    still be imported instead of its source."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return [p for p in (native.ROOT / "ledgerflow").rglob("*") if p.name.endswith(suffixes) and p.is_file()]


def clean() -> None:
    for path in _extensions():
        path.unlink()
    shutil.rmtree(BUILD_DIR, ignore_errors=True)


def build() -> None:
    missing = []
    if not (shutil.which("cc") or shutil.which("gcc")):
        missing.append("a C compiler (cc)")
    if not (Path(sysconfig.get_paths()["include"]) / "Python.h").exists():
        missing.append("Python.h")
    if missing:
        sys.exit(f"build_native: missing {' and '.join(missing)}; install them (Debian: gcc python3-dev)")
    # setuptools is imported here, not at the top: `--clean` needs neither it nor mypyc.
    from mypyc.build import mypycify
    from setuptools import Distribution  # type: ignore[import-untyped]

    started = time.monotonic()
    sources = [str(native.source_of(m).relative_to(native.ROOT)) for m in native.MODULES]
    print(f"build_native: compiling {len(sources)} modules with mypyc …", file=sys.stderr)
    extensions = mypycify(sources, opt_level="3", group_name=native.GROUP, target_dir=str(BUILD_DIR / "c"))
    # A bare Distribution: it does not read pyproject.toml (whose metadata this setuptools cannot parse).
    dist = Distribution({"name": "ledgerflow-native", "ext_modules": extensions})
    command = dist.get_command_obj("build_ext")
    command.inplace = True
    command.build_temp = str(BUILD_DIR / "temp")
    command.build_lib = str(BUILD_DIR / "lib")
    dist.run_command("build_ext")
    print(f"build_native: done in {time.monotonic() - started:.0f} s", file=sys.stderr)


def main(argv: list[str]) -> None:
    import os

    os.chdir(native.ROOT)  # mypyc names modules from paths relative to the repository root
    if argv[1:] == ["--clean"]:
        clean()
        return
    choice = native.decide(native.MODULES, native.ROOT, pure_requested=False)
    if choice.compiled:
        return
    clean()
    build()


if __name__ == "__main__":
    main(sys.argv)
