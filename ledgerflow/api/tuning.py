"""The edge's settings that are neither limits nor SSE knobs, parsed once when the app is made
(``create_app``): a bad value stops ``ledgerflow serve`` with one line before it listens.

- ``LEDGERFLOW_AUDIT_DEADLINE_S``: how long ``POST /v1/audit`` may run (seconds above 0, at most a
  day; default 60).
- ``LEDGERFLOW_READY_MAX_LAG``: records of ``conversation.events`` the read models may be behind
  while ``/readyz`` still answers 200 (a whole number, 0 or more; default 100000).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ledgerflow.envnumbers import DAY_S, env_number, env_whole

__all__ = ["AUDIT_DEADLINE_ENV", "READY_MAX_LAG_ENV", "EdgeTuning", "tuning_from"]

AUDIT_DEADLINE_ENV = "LEDGERFLOW_AUDIT_DEADLINE_S"
READY_MAX_LAG_ENV = "LEDGERFLOW_READY_MAX_LAG"


@dataclass(frozen=True, slots=True)
class EdgeTuning:
    """What the edge was started with (``tuning_from``)."""

    audit_deadline_s: float = 60.0
    """Past it ``POST /v1/audit`` is cancelled and answered 503 (api/audit_run.py)."""
    ready_max_lag: int = 100_000
    """More records behind than this and ``/readyz`` answers 503 naming ``projection``."""


def tuning_from(environ: Mapping[str, str]) -> EdgeTuning:
    """ValidationError naming the variable for a value out of range, nan or not a number."""
    default = EdgeTuning()
    return EdgeTuning(
        env_number(environ, AUDIT_DEADLINE_ENV, default.audit_deadline_s, 0, DAY_S, low_open=True),
        env_whole(environ, READY_MAX_LAG_ENV, default.ready_max_lag, 0),
    )
