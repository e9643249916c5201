"""Usage forecast: Holt's linear trend (double exponential smoothing) with an interval.

Pure and deterministic: fixed smoothing parameters (no fitting by search), no I/O.

Model (component form, written in error-correction form so that a series the model
fits exactly is reproduced exactly in floating point):

    initialisation   l_0 = y_0,  b_0 = y_1 - y_0
    one-step error   e_t = y_t - (l_{t-1} + b_{t-1})                 t = 1 … n-1
    level            l_t = l_{t-1} + b_{t-1} + alpha * e_t
    trend            b_t = b_{t-1} + alpha * beta * e_t
    forecast         ŷ_{n-1+h} = l_{n-1} + h * b_{n-1}                h = 1, 2, …

``e_1`` is zero by construction, so the residual scale comes from e_2 … e_{n-1}:
``sigma = sqrt(sum(e_t**2) / (n - 2))``. The h-step interval (Hyndman et al. 2008, the
ETS(A,A,N) equivalent of Holt's method) is

    expected ± z * sigma * sqrt(1 + sum_{j=1}^{h-1} (alpha * (1 + j * beta))**2)

with ``z`` the standard normal quantile of ``(1 + level) / 2``. It widens with the
horizon (alpha > 0) and with the noise (sigma). At least three observations are needed
(two to initialise, one to measure an error); fewer raise ``ValidationError``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from ledgerflow.errors import ValidationError

MIN_OBSERVATIONS = 3
DEFAULT_ALPHA = 0.5
DEFAULT_BETA = 0.1


@dataclass(frozen=True, slots=True)
class ForecastPoint:
    step: int
    expected: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class HoltFit:
    """The smoothed state after the last observation and the residual scale."""

    level: float
    trend: float
    sigma: float
    residuals: int


def fit(series: Sequence[float], *, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA) -> HoltFit:
    """Run Holt's recursions over ``series`` (oldest first); see the module docstring."""
    _check_parameters(alpha, beta)
    values = [float(y) for y in series]
    if len(values) < MIN_OBSERVATIONS:
        raise ValidationError(
            f"a forecast needs at least {MIN_OBSERVATIONS} observations, got {len(values)}; "
            "wait for more closed usage windows"
        )
    for index, y in enumerate(values):
        if not math.isfinite(y):
            raise ValidationError(f"observation #{index} is {y}; every observation must be a finite number")
    level, trend = values[0], values[1] - values[0]
    squared = 0.0
    for t in range(1, len(values)):
        error = values[t] - (level + trend)
        level = level + trend + alpha * error
        trend = trend + alpha * beta * error
        if t >= 2:
            squared += error * error
    residuals = len(values) - 2
    return HoltFit(level=level, trend=trend, sigma=math.sqrt(squared / residuals), residuals=residuals)


def forecast(
    series: Sequence[float],
    horizon: int,
    *,
    alpha: float = DEFAULT_ALPHA,
    beta: float = DEFAULT_BETA,
    level: float = 0.95,
) -> list[ForecastPoint]:
    """Forecast ``horizon`` steps past the end of ``series`` with a ``level`` interval."""
    if horizon < 1:
        raise ValidationError(f"horizon must be >= 1 step, got {horizon}")
    if not 0.0 < level < 1.0:
        raise ValidationError(f"interval level must lie strictly between 0 and 1, got {level}")
    model = fit(series, alpha=alpha, beta=beta)
    z = NormalDist().inv_cdf((1.0 + level) / 2.0)
    points: list[ForecastPoint] = []
    spread = 1.0  # 1 + sum_{j=1}^{h-1} (alpha * (1 + j * beta))**2
    for step in range(1, horizon + 1):
        if step > 1:
            spread += (alpha * (1.0 + (step - 1) * beta)) ** 2
        expected = model.level + step * model.trend
        half_width = z * model.sigma * math.sqrt(spread)
        points.append(ForecastPoint(step, expected, expected - half_width, expected + half_width))
    return points


def _check_parameters(alpha: float, beta: float) -> None:
    if not 0.0 < alpha <= 1.0:
        raise ValidationError(f"alpha must lie in (0, 1], got {alpha}")
    if not 0.0 <= beta <= 1.0:
        raise ValidationError(f"beta must lie in [0, 1], got {beta}")
