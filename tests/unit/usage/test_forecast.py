from __future__ import annotations

import itertools
import math

import pytest

from ledgerflow.errors import ValidationError
from ledgerflow.usage.forecast import ForecastPoint, fit, forecast


@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.1), (0.2, 0.9), (1.0, 0.0), (0.8, 1.0)])
@pytest.mark.parametrize(("a", "b"), [(3.0, 2.0), (100.0, -2.5), (7.0, 0.0)])
def test_linear_series_is_continued_exactly_with_a_zero_width_interval(
    alpha: float, beta: float, a: float, b: float
) -> None:
    series = [a + b * t for t in range(12)]
    points = forecast(series, 5, alpha=alpha, beta=beta)
    assert points == [
        ForecastPoint(h, a + b * (11 + h), a + b * (11 + h), a + b * (11 + h)) for h in range(1, 6)
    ]


def test_three_points_on_a_line_are_enough() -> None:
    assert [p.expected for p in forecast([1, 2, 3], 2)] == [4.0, 5.0]


def noisy(amplitude: float) -> list[float]:
    return [10.0 + 3.0 * t + amplitude * (-1) ** t for t in range(30)]


def widths(points: list[ForecastPoint]) -> list[float]:
    return [p.upper - p.lower for p in points]


def test_interval_widens_with_the_horizon() -> None:
    w = widths(forecast(noisy(2.0), 10))
    assert all(later > earlier for earlier, later in itertools.pairwise(w))


def test_interval_widens_with_the_noise() -> None:
    quiet, loud = widths(forecast(noisy(1.0), 4)), widths(forecast(noisy(5.0), 4))
    assert all(big > small > 0 for small, big in zip(quiet, loud, strict=True))


def test_interval_is_symmetric_and_follows_the_holt_variance_formula() -> None:
    series, alpha, beta = noisy(2.0), 0.5, 0.1
    model = fit(series, alpha=alpha, beta=beta)
    points = forecast(series, 3, alpha=alpha, beta=beta, level=0.95)
    for point in points:
        spread = 1 + sum((alpha * (1 + j * beta)) ** 2 for j in range(1, point.step))
        half = 1.959963984540054 * model.sigma * math.sqrt(spread)
        assert point.upper - point.expected == pytest.approx(half)
        assert point.expected - point.lower == pytest.approx(half)
        assert point.expected == pytest.approx(model.level + point.step * model.trend)


def test_higher_level_gives_a_wider_interval() -> None:
    narrow, wide = forecast(noisy(2.0), 1, level=0.8), forecast(noisy(2.0), 1, level=0.99)
    assert widths(wide)[0] > widths(narrow)[0]


def test_sigma_comes_from_the_residuals_after_initialisation() -> None:
    model = fit([0.0, 1.0, 4.0], alpha=0.5, beta=0.1)  # forecast for t=2 is 2, error 2
    assert model.residuals == 1 and model.sigma == 2.0
    assert model.level == 3.0 and model.trend == pytest.approx(1.1)


@pytest.mark.parametrize("series", [[], [5.0], [5.0, 6.0]])
def test_short_series_is_refused_with_a_clear_message(series: list[float]) -> None:
    with pytest.raises(ValidationError, match=f"at least 3 observations, got {len(series)}"):
        forecast(series, 3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"horizon": 0}, "horizon must be >= 1"),
        ({"horizon": 1, "alpha": 0.0}, "alpha must lie in"),
        ({"horizon": 1, "beta": 1.5}, "beta must lie in"),
        ({"horizon": 1, "level": 1.0}, "level must lie strictly"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict, message: str) -> None:
    horizon = kwargs.pop("horizon")
    with pytest.raises(ValidationError, match=message):
        forecast([1.0, 2.0, 3.0], horizon, **kwargs)


def test_non_finite_observation_is_refused() -> None:
    with pytest.raises(ValidationError, match="observation #1 is nan"):
        forecast([1.0, float("nan"), 3.0], 1)
