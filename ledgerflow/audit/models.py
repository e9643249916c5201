"""Folding ``models.audit`` and checking every transition is legal (pure: no I/O).

Each record is mapped onto the model registry's event (``ledgerflow.models.wire``), judged
by the aggregate's own ``check_transition`` against the tenant's registry so far, then
applied. The fold also yields every registry a tenant had, (tenant, version) → the models
it enabled, against which decisions under model rules are re-derived.
"""

from __future__ import annotations

from ledgerflow.audit.report import Finding
from ledgerflow.contracts.events import Event
from ledgerflow.models import ModelRegistry, ModelRejected, check_transition, evolve, initial_registry
from ledgerflow.models.wire import event_of
from ledgerflow.policy import ModelCatalog
from ledgerflow.projections.ops import Position


class ModelsCheck:
    def __init__(self) -> None:
        self._registries: dict[str, ModelRegistry] = {}
        self.catalogs: dict[tuple[str, int], ModelCatalog] = {}
        """Every accepted registry: (tenant, version) → what model rules read."""
        self.records = 0

    def feed(self, at: Position, record: Event) -> Finding | None:
        self.records += 1
        try:
            event = event_of(record)
        except TypeError:
            why = f"a {record.type} record does not belong on models.audit"
            return Finding("models.illegal", at.topic, at.partition, at.offset, record.subject, why)
        registry = self._registries.get(record.tenant) or initial_registry(record.tenant)
        problem = check_transition(registry, event)
        if problem is None:
            registry = self._registries[record.tenant] = evolve(registry, event)
            if not isinstance(event, ModelRejected):
                self.catalogs[(record.tenant, registry.version)] = ModelCatalog(
                    registry.version, registry.enabled_models()
                )
            return None
        why = f"{problem} (tenant {record.tenant!r}, {type(event).__name__} version {event.version})"
        return Finding("models.illegal", at.topic, at.partition, at.offset, record.subject, why)

    def registry_of(self, tenant: str) -> ModelRegistry:
        return self._registries.get(tenant) or initial_registry(tenant)
