"""Training-mode records: the aggregate's state, its commands and its events.

Times are microseconds since the Unix epoch (UTC). Events are past tense and immutable;
every event carries the tenant and the aggregate ``version`` it leaves behind (for a
rejection: the unchanged current version).
"""

from __future__ import annotations

from dataclasses import dataclass

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
class EnableTraining:
    command_id: str
    tenant: str
    actor: str
    actor_roles: tuple[str, ...]
    reason: str
    ttl_seconds: int | None = None
    expected_version: int | None = None
    issued_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DisableTraining:
    command_id: str
    tenant: str
    actor: str
    actor_roles: tuple[str, ...]
    reason: str
    expected_version: int | None = None
    issued_at: int


TrainingCommand = EnableTraining | DisableTraining


# --- events (past tense, immutable) ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingEnabled:
    tenant: str
    version: int
    command_id: str
    actor: str
    reason: str
    ttl_seconds: int
    occurred_at: int
    expires_at: int
    issued_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingDisabled:
    tenant: str
    version: int
    command_id: str
    actor: str
    reason: str
    occurred_at: int
    issued_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingExpired:
    tenant: str
    version: int
    expires_at: int
    occurred_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TrainingRejected:
    """A refused command. ``version`` is the (unchanged) current version."""

    tenant: str
    version: int
    command_id: str
    command_type: str
    actor: str
    code: str
    reason: str
    occurred_at: int
    issued_at: int


TrainingEvent = TrainingEnabled | TrainingDisabled | TrainingExpired | TrainingRejected
