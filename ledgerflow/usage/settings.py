"""The usage windows' settings from the environment: the worker and the audit read the same.

Pure: the caller passes the environment (``os.environ``), so this core reads no OS state.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet

from ledgerflow.envnumbers import DAY_S, env_number
from ledgerflow.usage.windows import MICROS_PER_SECOND, WindowConfig

__all__ = ["LATENESS_ENV", "WINDOW_ENV", "size_problem", "window_config_from"]

WINDOW_ENV = "LEDGERFLOW_USAGE_WINDOW_S"
"""Window size in seconds (default 60; 0.001 to 86400)."""
LATENESS_ENV = "LEDGERFLOW_USAGE_LATENESS_S"
"""Allowed lateness in seconds (default 10; 0 to 86400)."""


def window_config_from(environ: Mapping[str, str]) -> WindowConfig:
    """``LEDGERFLOW_USAGE_WINDOW_S`` (default 60) and ``LEDGERFLOW_USAGE_LATENESS_S`` (default 10);
    ValidationError naming the variable for a value out of range, nan or not a number."""
    size = env_number(environ, WINDOW_ENV, 60, 0.001, DAY_S)  # a window of whole microseconds
    lateness = env_number(environ, LATENESS_ENV, 10, 0, DAY_S)
    return WindowConfig(
        size_micros=round(size * MICROS_PER_SECOND), lateness_micros=round(lateness * MICROS_PER_SECOND)
    )


def size_problem(configured_micros: int, written_micros: AbstractSet[int]) -> str | None:
    """Why the usage agent must not run with windows of ``configured_micros`` when ``usage.windows``
    already holds windows of the sizes ``written_micros``; None when they agree (or nothing is written).

    A window's id and the read model's key name its start, so a re-fold at another size writes
    the whole history again under new windows, counted a second time downstream. Switching sizes
    at a boundary instead would leave one series of windows of two sizes: the read model, the
    forecast (equal steps) and the audit (one size) all take one size per topic. So the safe
    answer is to refuse, and name both sizes and the ways out."""
    other = sorted(written_micros - {configured_micros})
    if not other:
        return None
    sizes = ", ".join(_seconds(s) for s in other)
    # Two sizes written already: no setting agrees with both, only the rebuild is a way out.
    back = f"set it back to {sizes}" if len(written_micros) == 1 else "no size agrees with all of them"
    return (
        f"usage: {WINDOW_ENV} is {_seconds(configured_micros)} s but usage.windows holds windows of "
        f"{sizes} s, which this size would count again under new windows; {back}, or stop the workers, "
        "delete usage.windows and run `ledgerflow projections rebuild` to re-derive every window at "
        'the new size (docs/usage.md, "Changing the window size")'
    )


def _seconds(micros: int) -> str:
    whole, part = divmod(micros, MICROS_PER_SECOND)
    return str(whole) if not part else f"{whole}.{part:06d}".rstrip("0")
