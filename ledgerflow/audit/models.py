"""Folding ``models.audit`` and checking every transition is legal (pure: no I/O).

Each record is mapped onto the model registry's event (``ledgerflow.models.wire``), judged
by the aggregate's own ``check_transition`` against the tenant's registry so far, then
applied. The fold also yields every registry a tenant had, (tenant, version) → the models
it enabled, against which decisions under model rules are re-derived.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ledgerflow.audit.report import Finding
from ledgerflow.contracts.events import Event
from ledgerflow.models import ModelRegistry, ModelRejected, check_transition, evolve, initial_registry
from ledgerflow.models.wire import event_of
from ledgerflow.policy import ModelCatalog
from ledgerflow.projections.ops import Position

KIND = "models.illegal"


@dataclass
class ModelsCheck:
    registries: dict[str, ModelRegistry] = field(default_factory=dict)
    catalogs: dict[tuple[str, int], ModelCatalog] = field(default_factory=dict)
    """Every accepted registry: (tenant, version) → what model rules read."""
    records: int = 0

    def feed(self, at: Position, record: Event) -> Finding | None:
        """Apply one record; a finding when it is not a legal change of the registry before it."""
        self.records += 1
        problem = self._apply(record)
        if problem is None:
            return None
        return Finding(KIND, at.topic, at.partition, at.offset, record.subject, problem)

    def _apply(self, record: Event) -> str | None:
        try:
            event = event_of(record)
        except TypeError:
            return f"a {record.type} record does not belong on models.audit"
        registry = self.registries.get(record.tenant) or initial_registry(record.tenant)
        problem = check_transition(registry, event)
        if problem is not None:  # not applied: the next records are judged against the legal state
            return f"{problem} (tenant {record.tenant!r}, {type(event).__name__} version {event.version})"
        registry = self.registries[record.tenant] = evolve(registry, event)
        if not isinstance(event, ModelRejected):
            self.catalogs[(record.tenant, registry.version)] = ModelCatalog(
                registry.version, registry.enabled_models()
            )
        return None
