"""The model registry as an event-sourced aggregate: pure decide / evolve / check_transition.

Semantics (docs/models.md):

- Only an actor with the ``admin`` role may change the registry.
- ``expected_version`` (optimistic concurrency) must equal the current version.
- ``RegisterModel`` registers a model or replaces a registered model's settings (a new
  version either way); settings are checked: a provider, a positive context window,
  prices that are finite and not negative.
- ``SetModelEnabled`` needs a registered model, and refuses a no-op (enabling an enabled
  model, disabling a disabled one), so every accepted event changes something.
- Accepted events bump ``version`` by one; a rejection records the current version.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from ledgerflow import versioned
from ledgerflow.errors import ValidationError
from ledgerflow.models.records import (
    ModelCommand,
    ModelDisabled,
    ModelEnabled,
    ModelEvent,
    ModelRegistered,
    ModelRegistry,
    ModelRejected,
    ModelSettings,
    RegisterModel,
)
from ledgerflow.versioned import ADMIN_ROLE, NOT_ADMIN, VERSION_CONFLICT

__all__ = [
    "ADMIN_ROLE",
    "INVALID_SETTINGS",
    "NOT_ADMIN",
    "NO_CHANGE",
    "UNKNOWN_MODEL",
    "VERSION_CONFLICT",
    "check_transition",
    "decide",
    "evolve",
    "fold",
    "initial_registry",
    "settings_problem",
]

MAX_NAME_CHARS = 256
MAX_CONTEXT_WINDOW = 100_000_000
MAX_PRICE_PER_1K = 1_000_000.0
"""The highest price per 1,000 tokens a model may be registered with: far above any real price,
and low enough that a cost (tokens x price) stays a finite number a JSON answer can carry."""

# Machine-readable rejection codes (ModelRejected.code; also ledgerflow.versioned's two).
INVALID_SETTINGS = "invalid_settings"
UNKNOWN_MODEL = "unknown_model"
NO_CHANGE = "no_change"


def initial_registry(tenant: str) -> ModelRegistry:
    """The registry of a tenant that never registered a model (version 0, empty)."""
    return ModelRegistry(tenant=tenant)


def name_problem(label: str, name: str) -> str | None:
    """What is wrong with a model id or provider name (1..``MAX_NAME_CHARS`` printable
    characters), or None; the edge refuses with it before publishing, the agent before deciding."""
    if not name.strip() or len(name) > MAX_NAME_CHARS or not name.isprintable():
        return f"{label} {name[:40]!r} must be 1..{MAX_NAME_CHARS} printable characters"
    return None


def settings_problem(model: str, settings: ModelSettings) -> str | None:
    """What is wrong with registering ``model`` with ``settings``, or None."""
    problem = name_problem("model id", model) or name_problem("provider", settings.provider)
    if problem is not None:
        return problem
    window = settings.context_window
    if isinstance(window, bool) or not isinstance(window, int) or not 1 <= window <= MAX_CONTEXT_WINDOW:
        return f"context_window {window!r} must be an integer in 1..{MAX_CONTEXT_WINDOW}"
    for name in ("input_price_per_1k", "output_price_per_1k"):
        price = getattr(settings, name)
        if price is not None and (
            isinstance(price, bool)
            or not isinstance(price, int | float)
            or not math.isfinite(price)
            or not 0 <= price <= MAX_PRICE_PER_1K
        ):
            return f"{name} {price!r} must be a number in 0..{MAX_PRICE_PER_1K:,.0f} (or null: not known)"
    return None


def decide(registry: ModelRegistry, command: ModelCommand, now_micros: int) -> list[ModelEvent]:
    """The events ``command`` appends to ``registry`` at ``now_micros`` (exactly one).

    Raises ``ValidationError`` for a command of another tenant: a wiring bug, not a refusal.
    """
    if command.tenant != registry.tenant:
        raise ValidationError(
            f"command {command.command_id!r} is for tenant {command.tenant!r} but was decided "
            f"against the registry of tenant {registry.tenant!r}"
        )
    refusal = _refusal(registry, command)
    if refusal is not None:
        code, message = refusal
        return [
            ModelRejected(
                tenant=registry.tenant,
                version=registry.version,
                command_id=command.command_id,
                actor=command.actor,
                model=command.model,
                code=code,
                reason=message,
                occurred_at=now_micros,
            )
        ]
    common: dict[str, Any] = {
        "tenant": registry.tenant,
        "version": registry.version + 1,
        "command_id": command.command_id,
        "actor": command.actor,
        "model": command.model,
        "occurred_at": now_micros,
    }
    if isinstance(command, RegisterModel):
        return [ModelRegistered(settings=command.settings, **common)]
    if command.enabled:
        return [ModelEnabled(**common)]
    return [ModelDisabled(**common)]


def _refusal(registry: ModelRegistry, command: ModelCommand) -> tuple[str, str] | None:
    refused = versioned.not_admin(command.actor_roles) or versioned.version_conflict(
        command.expected_version, registry.version
    )
    if refused is not None:
        return refused
    if isinstance(command, RegisterModel):
        problem = settings_problem(command.model, command.settings)
        return None if problem is None else (INVALID_SETTINGS, problem)
    current = registry.models.get(command.model)
    if current is None:  # the name shortened: the rejection record carries the name in full already
        return UNKNOWN_MODEL, f"model {command.model[:40]!r} is not registered; register it first"
    if current.enabled == command.enabled:
        state = "enabled" if current.enabled else "disabled"
        return NO_CHANGE, f"model {command.model!r} is already {state} (version {registry.version})"
    return None


def evolve(registry: ModelRegistry, event: ModelEvent) -> ModelRegistry:
    """Apply one event. Mechanical: legality is ``check_transition``'s job."""
    if isinstance(event, ModelRejected):
        return registry
    models = dict(registry.models)
    if isinstance(event, ModelRegistered):
        models[event.model] = event.settings
    else:
        models[event.model] = replace(models[event.model], enabled=isinstance(event, ModelEnabled))
    return ModelRegistry(registry.tenant, event.version, MappingProxyType(models))


def check_transition(registry: ModelRegistry, event: ModelEvent) -> str | None:
    """Name what is illegal about applying ``event`` to ``registry``, or None (for the auditor)."""
    name = type(event).__name__
    if event.tenant != registry.tenant:
        return f"{name} for tenant {event.tenant!r} applied to tenant {registry.tenant!r}"
    if isinstance(event, ModelRejected):
        if event.version != registry.version:
            return f"ModelRejected records version {event.version} but the registry is at {registry.version}"
        return None
    if event.version != registry.version + 1:
        return f"{name} carries version {event.version}; the next version is {registry.version + 1}"
    if isinstance(event, ModelRegistered):
        return settings_problem(event.model, event.settings)
    current = registry.models.get(event.model)
    if current is None:
        return f"{name} of model {event.model!r}, which is not registered"
    if current.enabled == isinstance(event, ModelEnabled):
        state = "enabled" if current.enabled else "disabled"
        return f"{name} of model {event.model!r}, which is already {state}"
    return None


def fold(events: Iterable[ModelEvent], initial: ModelRegistry | None = None) -> ModelRegistry:
    """Replay events strictly: raises ``ValidationError`` naming the first illegal one."""
    return versioned.fold_strictly(
        events,
        initial,
        initial_of=initial_registry,
        check=check_transition,
        evolve=evolve,
        what="model registry",
        empty="cannot fold an empty event list without an initial registry",
    )
