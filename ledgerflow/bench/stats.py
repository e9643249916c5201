"""Pure arithmetic of the benchmark: percentiles, medians, and each figure against its goal."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile by linear interpolation between closest ranks (NaN if empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    real = [v for v in values if not math.isnan(v)]
    return statistics.median(real) if real else math.nan


def ratio(num: float, den: float) -> float:
    return num / den if den and not math.isnan(num) and not math.isnan(den) else math.nan


@dataclass(frozen=True, slots=True)
class Figure:
    """One figure of the summary: ours against the baseline, with the goal it is held to."""

    number: int
    name: str
    ours: float
    baseline: float
    unit: str
    value: float  # the ratio (or the absolute value for figure 4)
    goal: str  # e.g. ">= 0.5"
    met: bool | None  # None when there is nothing to judge (no data)
    runs: int
    ours_runs: tuple[float, ...] = ()
    baseline_runs: tuple[float, ...] = ()
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for k, v in out.items():
            if isinstance(v, float) and math.isnan(v):
                out[k] = None
        out["ours_runs"] = [None if math.isnan(x) else x for x in self.ours_runs]
        out["baseline_runs"] = [None if math.isnan(x) else x for x in self.baseline_runs]
        return out


def judge(value: float, goal: str) -> bool | None:
    """Whether ``value`` meets ``goal`` (``">= 0.5"``, ``"<= 2.0"``); None if unmeasured."""
    if not goal or math.isnan(value):
        return None
    op, _, bound = goal.partition(" ")
    limit = float(bound)
    return value >= limit if op == ">=" else value <= limit


def paired_ratio(ours: Sequence[float], baseline: Sequence[float]) -> float:
    """Median of the per-round ratios (each round's baseline ran next to it)."""
    return median([ratio(o, b) for o, b in zip(ours, baseline, strict=False)])


def figure(
    number: int,
    name: str,
    ours: Sequence[float],
    baseline: Sequence[float],
    unit: str,
    goal: str,
    *,
    absolute: bool = False,
    note: str = "",
) -> Figure:
    """A figure from per-round measurements: medians, and the median of per-round ratios."""
    value = median(ours) if absolute else paired_ratio(ours, baseline)
    return Figure(
        number,
        name,
        median(ours),
        median(baseline),
        unit,
        value,
        goal,
        judge(value, goal),
        len(ours),
        tuple(ours),
        tuple(baseline),
        note,
    )
