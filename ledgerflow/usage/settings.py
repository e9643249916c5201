"""The usage windows' settings from the environment: the worker and the audit read the same.

Pure: the caller passes the environment (``os.environ``), so this core reads no OS state.
"""

from __future__ import annotations

from collections.abc import Mapping

from ledgerflow.usage.windows import WindowConfig

__all__ = ["LATENESS_ENV", "WINDOW_ENV", "window_config_from"]

WINDOW_ENV = "LEDGERFLOW_USAGE_WINDOW_S"
"""Window size in seconds (default 60)."""
LATENESS_ENV = "LEDGERFLOW_USAGE_LATENESS_S"
"""Allowed lateness in seconds (default 10)."""


def window_config_from(environ: Mapping[str, str]) -> WindowConfig:
    """``LEDGERFLOW_USAGE_WINDOW_S`` (default 60) and ``LEDGERFLOW_USAGE_LATENESS_S`` (default 10)."""
    size = float(environ.get(WINDOW_ENV, "60"))
    lateness = float(environ.get(LATENESS_ENV, "10"))
    return WindowConfig(size_micros=int(size * 1e6), lateness_micros=int(lateness * 1e6))
