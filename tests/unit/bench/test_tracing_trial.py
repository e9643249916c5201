"""The tracing-overhead trial measures off and on itself and leaves spans off."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider

from ledgerflow.bench import tracing_trial
from ledgerflow.tracing import spans


def test_the_trial_reports_off_and_on_and_leaves_spans_off() -> None:
    result = tracing_trial.run(20)
    assert set(result) == {
        "records",
        "no_hook_us",
        "off_us",
        "on_us",
        "overhead_us",
        "overhead_pct",
        "hook_off_us",
        "hook_on_us",
    }
    assert result["records"] == 20 and min(result["no_hook_us"], result["off_us"], result["on_us"]) > 0
    assert not spans.enabled()
    assert "spans off" in tracing_trial.line(result) and "not measured" in tracing_trial.line({})


def test_the_trial_refuses_to_run_with_spans_already_on() -> None:
    spans.configure("test", TracerProvider())
    try:
        with pytest.raises(RuntimeError, match="configured"):
            tracing_trial.run(5)
    finally:
        spans.disable()
