"""The benchmark's arithmetic: percentiles, medians, paired ratios and goal judgements."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.bench.stats import figure, judge, median, paired_ratio, percentile, ratio


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [10.0, 20.0, 30.0, 40.0]
    assert percentile(values, 0) == 10.0
    assert percentile(values, 100) == 40.0
    assert percentile(values, 50) == 25.0
    assert percentile([5.0], 99) == 5.0
    assert math.isnan(percentile([], 50))


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=50), st.floats(0, 100))
def test_percentile_lies_within_the_values_and_is_monotonic_in_p(values: list[float], p: float) -> None:
    got = percentile(values, p)
    assert min(values) - 1e-6 <= got <= max(values) + 1e-6
    assert percentile(values, 0) <= got + 1e-6 <= percentile(values, 100) + 2e-6


def test_median_ignores_unmeasured_rounds() -> None:
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert math.isnan(median([math.nan]))


def test_ratio_is_nan_when_either_side_is_missing_or_the_baseline_is_zero() -> None:
    assert ratio(1.0, 4.0) == 0.25
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 2.0))


def test_paired_ratio_is_the_median_of_per_round_ratios_not_the_ratio_of_medians() -> None:
    ours, baseline = [10.0, 10.0, 40.0], [100.0, 20.0, 40.0]
    assert paired_ratio(ours, baseline) == 0.5  # ratios 0.1, 0.5, 1.0
    assert ratio(median(ours), median(baseline)) == 0.25


@pytest.mark.parametrize(
    ("value", "goal", "met"),
    [
        (0.6, ">= 0.5", True),
        (0.4, ">= 0.5", False),
        (1.9, "<= 2.0", True),
        (2.1, "<= 2.0", False),
        (math.nan, ">= 0.5", None),
        (1.0, "", None),
    ],
)
def test_judge_holds_a_value_to_its_goal(value: float, goal: str, met: bool | None) -> None:
    assert judge(value, goal) is met


def test_absolute_figures_are_judged_on_our_median_and_json_has_no_nan() -> None:
    fig = figure(
        4, "round trips", [0.02, 0.008, 0.009], [7.0, 7.0, 7.1], "rt/event", "<= 0.01", absolute=True
    )
    assert (fig.value, fig.met, fig.runs) == (0.009, True, 3)
    unmeasured = figure(1, "x", [math.nan], [math.nan], "events/s", ">= 0.5").to_json()
    assert unmeasured["value"] is None and unmeasured["met"] is None and unmeasured["ours_runs"] == [None]


@pytest.mark.parametrize("raw", ["0", "-5", "nan", "inf", "abc", ""])
def test_worker_latency_refuses_a_rate_or_duration_that_measures_nothing_in_one_line(raw: str) -> None:
    import subprocess
    import sys

    ran = subprocess.run(
        [sys.executable, "-m", "ledgerflow.bench.worker_latency", "--rate", raw],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert ran.returncode == 2, ran.stderr
    assert ran.stderr.count("\n") == 1 and "--rate" in ran.stderr, ran.stderr
