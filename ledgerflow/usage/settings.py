"""The usage windows' settings from the environment: the worker and the audit read the same.

Pure: the caller passes the environment (``os.environ``), so this core reads no OS state.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledgerflow.envnumbers import DAY_S, env_number
from ledgerflow.usage.windows import MICROS_PER_SECOND, WindowConfig

__all__ = ["LATENESS_ENV", "WINDOW_ENV", "window_config_from"]

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
