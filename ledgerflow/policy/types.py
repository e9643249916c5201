"""Records of the policy core: actions, the turn evaluated, training state, the decision."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ledgerflow.errors import ValidationError

ROLES = frozenset({"user", "assistant", "tool"})


class Action(StrEnum):
    """What a rule asks for; also the outcome of a decision. Ordered by severity."""

    ALLOW = "allow"
    REVIEW = "review"
    REDACT = "redact"
    DENY = "deny"

    @property
    def severity(self) -> int:
        """0 for allow … 3 for deny: the outcome is the most severe matched action."""
        return SEVERITY[self]


SEVERITY: dict[Action, int] = {
    Action.ALLOW: 0,
    Action.REVIEW: 1,
    Action.REDACT: 2,
    Action.DENY: 3,
}


@dataclass(frozen=True, slots=True)
class Turn:
    """The part of a MessageSubmitted event that policy evaluation reads."""

    event_id: str
    tenant: str
    conversation_id: str
    role: str
    content: str
    model: str | None = None
    """The model the turn names (``MessageSubmitted.model``); read by model rules only."""

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValidationError(
                f"turn {self.event_id!r} has role {self.role!r}; expected one of {sorted(ROLES)}"
            )
        if not isinstance(self.content, str):
            raise ValidationError(
                f"turn {self.event_id!r} content must be a string, got {type(self.content).__name__}"
            )


@dataclass(frozen=True, slots=True)
class TrainingState:
    """A tenant's training mode as of the decision: on/off and the state's version."""

    enabled: bool
    version: int

    def __post_init__(self) -> None:
        if isinstance(self.version, bool) or not isinstance(self.version, int) or self.version < 0:
            raise ValidationError(
                f"training state version must be a non-negative integer, got {self.version!r}"
            )


@dataclass(frozen=True, slots=True)
class ModelCatalog:
    """A tenant's model registry as of the decision: its version and the models turns may use."""

    version: int
    enabled: frozenset[str]


NO_MODELS = ModelCatalog(version=0, enabled=frozenset())
"""The registry of a tenant that never registered a model: every model is unavailable."""


@dataclass(frozen=True, slots=True)
class Decision:
    """The result of evaluating one turn; enough to re-evaluate it bit for bit."""

    outcome: Action
    score: float
    matched_rules: tuple[str, ...]
    rule_pack_version: int | None
    constitution_hash: str
    training_version: int
    training_enabled: bool
    redactions: tuple[tuple[int, int], ...]
    reason: str | None = None
    """Why the rules were not (all) applied: ``"evaluation_budget"``; None normally."""
    models_version: int | None = None
    """The model registry version model rules were evaluated against; None when the pack has none."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (lists instead of tuples, outcome as its string); ``reason`` only when set."""
        result: dict[str, Any] = {
            "outcome": self.outcome.value,
            "score": self.score,
            "matched_rules": list(self.matched_rules),
            "rule_pack_version": self.rule_pack_version,
            "constitution_hash": self.constitution_hash,
            "training_version": self.training_version,
            "training_enabled": self.training_enabled,
            "redactions": [[start, end] for start, end in self.redactions],
        }
        if self.reason is not None:
            result["reason"] = self.reason
        if self.models_version is not None:
            result["models_version"] = self.models_version
        return result
