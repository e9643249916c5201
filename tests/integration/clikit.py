"""``ledgerflow`` run as a subprocess, the way an operator runs it: exit code, stdout, stderr."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ledgerflow.config import Settings
from ledgerflow.demo import child_env


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]

    def one_line(self) -> str:
        """The single line a failure prints (asserting that it is exactly one)."""
        assert len(self.err_lines) == 1, f"expected one line on stderr, got:\n{self.err}"
        return self.err_lines[0]


def run_cli(
    settings: Settings,
    *args: str,
    env: Mapping[str, str] | None = None,
    drop: tuple[str, ...] = (),
    cwd: Path | None = None,
    timeout: float = 120.0,
    stdin: str | None = None,
) -> Ran:
    """``ledgerflow ARGS`` with ``settings`` in the environment, ``env`` added, ``drop`` removed."""
    full = child_env(settings) | {"PYTHONUNBUFFERED": "1"} | dict(env or {})
    for name in drop:
        full.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "ledgerflow.cli", *args],
        env=full,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
    )
    return Ran(done.returncode, done.stdout, done.stderr)
