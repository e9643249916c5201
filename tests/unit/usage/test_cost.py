"""Cost of usage from registered prices: a range when input and output prices differ."""

from __future__ import annotations

from ledgerflow.api.usage import windows
from ledgerflow.models import ModelSettings
from ledgerflow.usage.cost import CostRange, cost_range


def test_cost_is_a_range_between_the_two_prices() -> None:
    assert cost_range(2000, 0.5, 1.5) == CostRange(1.0, 3.0)
    assert cost_range(2000, 1.5, 0.5) == CostRange(1.0, 3.0)


def test_a_cost_that_is_no_finite_number_is_no_cost() -> None:
    """A price past the registry's bound (written to models.audit from outside, or registered
    before the bound) made tokens x price infinite, and the usage answer no JSON: a 500 on every
    read of the tenant. It is an unknown cost instead."""
    assert cost_range(10_000, 1e308, None) is None
    assert cost_range(10_000, 0.5, 1e308) is None
    assert cost_range(10_000, 1_000_000.0, None) == CostRange(10_000_000.0, 10_000_000.0)


def test_one_known_price_gives_an_exact_cost_and_none_gives_no_cost() -> None:
    assert cost_range(1500, None, 2.0) == CostRange(3.0, 3.0)
    assert cost_range(1500, 0.0, None) == CostRange(0.0, 0.0)
    assert cost_range(1500, None, None) is None


def test_usage_windows_carry_cost_only_for_models_with_prices() -> None:
    tokens = {b"slm-1|0|60|0": b"1000", b"slm-1|0|60|1": b"1000", b"other|0|60|0": b"10"}
    turns = {b"slm-1|0|60|0": b"1", b"slm-1|0|60|1": b"1", b"other|0|60|0": b"1"}
    prices = {
        "slm-1": ModelSettings(
            provider="local", context_window=1, input_price_per_1k=1.0, output_price_per_1k=2.0
        )
    }
    view = {w["model"]: w for w in windows(tokens, turns, prices)["windows"]}
    assert view["slm-1"]["tokens"] == 2000 and view["slm-1"]["cost"] == {"low": 2.0, "high": 4.0}
    assert view["other"]["cost"] is None
