"""The audit's progress: the bar every long verb draws (``commands.progress``), or nothing."""

from __future__ import annotations

import io

import pytest

from ledgerflow.audit.cli import bars
from ledgerflow.commands import progress


def test_hidden_progress_writes_nothing_and_takes_every_update() -> None:
    out = io.StringIO()
    with bars(False, out)("replaying logs", 10) as update:
        update(5)
        update(7, 20)
    assert out.getvalue() == ""


def test_forced_progress_draws_the_terminal_bar_with_label_and_count() -> None:
    out = io.StringIO()
    with bars(True, out)("replaying logs", 10) as update:
        update(5)
    assert "replaying logs" in out.getvalue() and "5/10" in out.getvalue()


def test_off_a_terminal_the_audit_writes_the_plain_lines_of_every_verb(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "PLAIN_EVERY_S", 0.0)
    out = io.StringIO()
    with bars(None, out)("rebuilding read models (round 1)", 10) as update:
        update(5)
    lines = out.getvalue().splitlines()
    assert lines and lines[0].startswith("rebuilding read models (round 1): 5/10")
    assert "\x1b" not in out.getvalue()  # no terminal escapes in a log
