"""Token usage: event-time windows, token estimation and forecasts (see docs/usage.md)."""

from __future__ import annotations

from ledgerflow.usage.estimate import estimate_tokens, estimate_tokens_from_len
from ledgerflow.usage.forecast import ForecastPoint, HoltFit, fit, forecast
from ledgerflow.usage.windows import (
    ClosedWindow,
    Emitted,
    LateUsage,
    UsageState,
    WindowClosed,
    WindowConfig,
    WindowTotals,
    add,
    advance,
    window_bounds,
)

__all__ = [
    "ClosedWindow",
    "Emitted",
    "ForecastPoint",
    "HoltFit",
    "LateUsage",
    "UsageState",
    "WindowClosed",
    "WindowConfig",
    "WindowTotals",
    "add",
    "advance",
    "estimate_tokens",
    "estimate_tokens_from_len",
    "fit",
    "forecast",
    "window_bounds",
]
