"""A spy on the pure rule compile step (``policy.rulepack._compile_rule``): the tests that prove a
pack is refused, listed or admitted without compiling count its calls."""

from __future__ import annotations

from typing import Any

import pytest

from ledgerflow.policy import rulepack


def count_rule_compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A list that grows by one for every rule compiled from now on (this test only)."""
    calls: list[int] = []
    real = rulepack._compile_rule

    def spy(*args: Any) -> Any:
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(rulepack, "_compile_rule", spy)
    return calls
