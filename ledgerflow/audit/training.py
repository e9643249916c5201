"""Folding ``training.audit`` and checking every transition is legal (pure: no I/O).

Each record is mapped onto the training aggregate's event (``ledgerflow.training.wire``)
and judged by the aggregate's own ``check_transition`` against the tenant's state so far,
then applied with ``evolve``. The fold also yields every training state a tenant had,
(tenant, version) → enabled, against which the decisions' recorded training state is
checked.
"""

from __future__ import annotations

from ledgerflow.audit.report import Finding
from ledgerflow.contracts.events import Event
from ledgerflow.projections.ops import Position
from ledgerflow.training import TrainingState, check_transition, evolve, initial_state
from ledgerflow.training.records import TrainingRejected
from ledgerflow.training.wire import event_of


class TrainingCheck:
    def __init__(self) -> None:
        self._states: dict[str, TrainingState] = {}
        self.states: dict[tuple[str, int], bool] = {}
        """Every accepted state: (tenant, version) → enabled. Version 0 (never switched) is off."""
        self.records = 0

    def feed(self, at: Position, record: Event) -> Finding | None:
        self.records += 1
        try:
            event = event_of(record)
        except TypeError:
            return _illegal(at, record, f"a {record.type} record does not belong on training.audit")
        tenant = record.tenant
        state = self._states.get(tenant) or initial_state(tenant)
        problem = check_transition(state, event)
        # Step on regardless: one illegal record is reported once, not again for every later one.
        state = self._states[tenant] = evolve(state, event)
        if not isinstance(event, TrainingRejected):
            self.states[(tenant, state.version)] = state.enabled
        if problem is None:
            return None
        detail = f"{problem} (tenant {tenant!r}, {type(event).__name__} version {event.version})"
        return _illegal(at, record, detail)

    def state_of(self, tenant: str) -> TrainingState:
        return self._states.get(tenant) or initial_state(tenant)


def _illegal(at: Position, record: Event, detail: str) -> Finding:
    return Finding("training.illegal", at.topic, at.partition, at.offset, record.subject, detail)
