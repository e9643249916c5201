"""The model registry: per tenant, providers and models with their settings, as a pure
event-sourced aggregate (see docs/models.md). Pure: no I/O, no clock."""

from __future__ import annotations

from ledgerflow.models.aggregate import (
    ADMIN_ROLE,
    INVALID_SETTINGS,
    NO_CHANGE,
    NOT_ADMIN,
    UNKNOWN_MODEL,
    VERSION_CONFLICT,
    check_transition,
    decide,
    evolve,
    fold,
    initial_registry,
    settings_problem,
)
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
    SetModelEnabled,
)

__all__ = [
    "ADMIN_ROLE",
    "INVALID_SETTINGS",
    "NOT_ADMIN",
    "NO_CHANGE",
    "UNKNOWN_MODEL",
    "VERSION_CONFLICT",
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
    "check_transition",
    "decide",
    "evolve",
    "fold",
    "initial_registry",
    "settings_problem",
]
