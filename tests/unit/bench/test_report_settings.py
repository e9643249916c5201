"""The report's settings line says what the run used, whatever the reporting shell's environment."""

from __future__ import annotations

from dataclasses import asdict

import pytest

from ledgerflow.bench.report import _settings_line
from ledgerflow.bench.run import Plan


def test_the_settings_line_names_the_linger_of_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGERFLOW_BATCH_LINGER_MS", "5")
    plan = Plan.make(quick=True, runs=1, events=0)
    assert plan.linger_ms == 5
    monkeypatch.setenv("LEDGERFLOW_BATCH_LINGER_MS", "20")  # the report is written later, elsewhere
    line = _settings_line({"plan": asdict(plan)})
    assert "up to 5 ms for more records" in line, line
