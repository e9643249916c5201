"""Whose turn it is to run an audit on this edge: the tenant that has waited longest goes first.

An edge runs ``AUDITS_AT_ONCE`` audit at a time whatever the tenant (each reads every tenant's
logs). A refused tenant is told to come back after ``Retry-After``; without turns, a tenant
whose admin (or script) asks again the moment its audit ends would take the slot every time and
keep every other tenant at 429 for ever. So a refusal is remembered for ``WAITING_FOR_S``
(long enough for a client honouring ``Retry-After`` to come back), with when the tenant began
waiting, and a tenant yields (is refused too) while another has waited longer: the one that ran
the last audit, one that never asked before, one that began waiting later. With two tenants
asking continuously the slot alternates; a third one waiting is served before either runs again
(only the last one used to yield, so two eager tenants kept a third out, each going after the
other); a tenant nobody competes with audits back to back.

Pure and in-memory, per edge process: edges do not share a slot, so they need not share turns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WAITING_FOR_S = 30.0
"""How long a refused tenant counts as waiting (a few ``Retry-After`` periods)."""


@dataclass
class AuditTurns:
    """The edge's memory of who ran the last audit and who was refused since."""

    waiting_for_s: float = WAITING_FOR_S
    last: str | None = None
    """The tenant whose audit started last."""
    refused_at: dict[str, float] = field(default_factory=dict)
    """Tenants refused and not served since, with the time of their latest refusal."""
    waiting_since: dict[str, float] = field(default_factory=dict)
    """The same tenants, with the time of their first refusal since they were last served."""

    def yields(self, tenant: str, now: float) -> bool:
        """Whether ``tenant`` must let a tenant that has waited longer go first."""
        mine = self.waiting_since.get(tenant) if self._waits(tenant, now) else None
        return any(
            t != tenant and self._waits(t, now) and (mine is None or since < mine)
            for t, since in self.waiting_since.items()
        )

    def refused(self, tenant: str, now: float) -> None:
        """``tenant`` asked and was turned away: it waits now (since its first refusal)."""
        if not self._waits(tenant, now):
            self.waiting_since[tenant] = now
        self.refused_at[tenant] = now
        self._forget(now)

    def started(self, tenant: str, now: float) -> None:
        """``tenant``'s audit took the slot: it waits no more and is the last one."""
        self.refused_at.pop(tenant, None)
        self.waiting_since.pop(tenant, None)
        self.last = tenant
        self._forget(now)

    def _waits(self, tenant: str, now: float) -> bool:
        at = self.refused_at.get(tenant)
        return at is not None and now - at <= self.waiting_for_s

    def _forget(self, now: float) -> None:
        stale = [t for t, at in self.refused_at.items() if now - at > self.waiting_for_s]
        for t in stale:
            del self.refused_at[t]
            self.waiting_since.pop(t, None)
