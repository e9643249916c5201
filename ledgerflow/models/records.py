"""Model-registry records: a tenant's registry (state), its commands and its events.

Times are microseconds since the Unix epoch (UTC). Every event carries the tenant and the
registry ``version`` it leaves behind (for a rejection: the unchanged current version).
Prices are per 1,000 tokens, in the tenant's billing currency; ``None`` = not known.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from ledgerflow.versioned import VersionedCommand, VersionedOutcome

__all__ = [
    "ModelCommand",
    "ModelDisabled",
    "ModelEnabled",
    "ModelEvent",
    "ModelRegistered",
    "ModelRegistry",
    "ModelRejected",
    "ModelSettings",
    "RegisterModel",
    "SetModelEnabled",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSettings:
    """One registered model: who provides it, how large its context is, what it costs."""

    provider: str
    context_window: int
    input_price_per_1k: float | None = None
    output_price_per_1k: float | None = None
    enabled: bool = True


_EMPTY: Mapping[str, ModelSettings] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class ModelRegistry:
    """One tenant's registry. ``version`` counts accepted changes."""

    tenant: str
    version: int = 0
    models: Mapping[str, ModelSettings] = field(default_factory=lambda: _EMPTY)

    def providers(self) -> dict[str, list[str]]:
        """Provider → its models (sorted): the registry as the console shows it."""
        out: dict[str, list[str]] = {}
        for model in sorted(self.models):
            out.setdefault(self.models[model].provider, []).append(model)
        return dict(sorted(out.items()))

    def enabled_models(self) -> frozenset[str]:
        return frozenset(m for m, s in self.models.items() if s.enabled)


# --- commands -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Command(VersionedCommand):
    """What every registry command says: who asks, about which model, at which version."""

    model: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterModel(_Command):
    """Register a model, or replace the settings of a registered one."""

    settings: ModelSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class SetModelEnabled(_Command):
    """Enable or disable a registered model (its settings stay)."""

    enabled: bool


ModelCommand = RegisterModel | SetModelEnabled


# --- events (past tense, immutable) ---------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRegistered(VersionedOutcome):
    model: str
    settings: ModelSettings


@dataclass(frozen=True, slots=True, kw_only=True)
class _Switched(VersionedOutcome):
    model: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEnabled(_Switched):
    """A registered model was enabled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelDisabled(_Switched):
    """A registered model was disabled."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRejected(VersionedOutcome):
    """A refused command. ``version`` is the (unchanged) current version."""

    model: str
    code: str
    reason: str


ModelEvent = ModelRegistered | ModelEnabled | ModelDisabled | ModelRejected
