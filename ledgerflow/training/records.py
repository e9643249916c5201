"""Training-mode records: the aggregate's state, its commands and its events.

Times are microseconds since the Unix epoch (UTC). Events are past tense and immutable;
every event carries the tenant and the aggregate ``version`` it leaves behind (for a
rejection: the unchanged current version).
"""

from __future__ import annotations

from dataclasses import dataclass

from ledgerflow.versioned import VersionedCommand, VersionedOutcome

__all__ = [
    "DisableTraining",
    "EnableTraining",
    "TrainingCommand",
    "TrainingDisabled",
    "TrainingEnabled",
    "TrainingEvent",
    "TrainingExpired",
    "TrainingRejected",
    "TrainingState",
]


@dataclass(frozen=True, slots=True)
class TrainingState:
    """One tenant's training lock. ``version`` counts accepted transitions."""

    tenant: str
    enabled: bool = False
    version: int = 0
    owner: str | None = None
    reason: str | None = None
    enabled_at: int | None = None
    expires_at: int | None = None


# --- commands -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class EnableTraining(VersionedCommand):
    reason: str
    ttl_seconds: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DisableTraining(VersionedCommand):
    reason: str


TrainingCommand = EnableTraining | DisableTraining


# --- events (past tense, immutable) ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingEnabled(VersionedOutcome):
    reason: str
    ttl_seconds: int
    expires_at: int
    issued_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingDisabled(VersionedOutcome):
    reason: str
    issued_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingExpired:
    tenant: str
    version: int
    expires_at: int
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingRejected(VersionedOutcome):
    """A refused command. ``version`` is the (unchanged) current version."""

    command_type: str
    code: str
    reason: str
    issued_at: int


TrainingEvent = TrainingEnabled | TrainingDisabled | TrainingExpired | TrainingRejected
