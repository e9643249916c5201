"""Numbers from environment variables, each with its allowed range, and one line when it is not.

Pure: the caller passes the environment (``os.environ``). Unset or empty gives the default. A value
that does not parse, is nan or infinite, or lies outside the range is ValidationError naming the
variable, the value and what is allowed (``ledgerflow`` prints it as one line and exits 2), e.g.
``LEDGERFLOW_USAGE_WINDOW_S='nan': seconds from 0.001 to 86400 (default 60)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import TypeVar

from ledgerflow.errors import ValidationError

__all__ = ["DAY_S", "env_number", "env_whole"]

N = TypeVar("N", int, float)

DAY_S = 86400.0
"""The upper bound of the seconds settings: anything longer is a typo, not a setting."""


def env_number(
    environ: Mapping[str, str],
    name: str,
    default: float,
    low: float,
    high: float = math.inf,
    *,
    low_open: bool = False,
    unit: str = "seconds",
) -> float:
    """``name`` as a finite number from ``low`` (excluded if ``low_open``) to ``high``."""
    raw, value = _read(environ, name, float)
    if raw is None:
        return default
    if (
        value is None
        or not math.isfinite(value)
        or (value <= low if low_open else value < low)
        or value > high
    ):
        if math.isfinite(high):
            allowed = f"above {low:g} and at most {high:g}" if low_open else f"from {low:g} to {high:g}"
        else:
            allowed = f"above {low:g}" if low_open else f"{low:g} or more"
        raise ValidationError(f"{name}={raw!r}: {unit} {allowed} (default {default:g})")
    return value


def env_whole(
    environ: Mapping[str, str],
    name: str,
    default: int,
    low: int,
    high: int | None = None,
    *,
    unit: str = "a whole number",
) -> int:
    """``name`` as a whole number from ``low`` to ``high`` (no bound if None); ``unit`` names
    what it counts in the error (``whole seconds``)."""
    raw, value = _read(environ, name, int)
    if raw is None:
        return default
    if value is None or value < low or (high is not None and value > high):
        allowed = f"from {low} to {high}" if high is not None else f"{low} or more"
        raise ValidationError(f"{name}={raw!r}: {unit} {allowed} (default {default})")
    return value


def _read(environ: Mapping[str, str], name: str, kind: Callable[[str], N]) -> tuple[str | None, N | None]:
    """``name``'s text (None when unset or blank) and its value as ``kind`` (None if it does not parse)."""
    raw = environ.get(name, "").strip()
    if not raw:
        return None, None
    try:
        return raw, kind(raw)
    except ValueError:
        return raw, None
