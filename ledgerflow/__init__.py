"""ledgerflow: an event-sourced stream-processing backbone for governed AI conversations."""

from __future__ import annotations

__version__ = "0.1.0"
