"""Whose turn it is to run an audit on this edge: while other tenants wait, the last one yields.

An edge runs ``AUDITS_AT_ONCE`` audit at a time whatever the tenant (each reads every tenant's
logs). A refused tenant is told to come back after ``Retry-After``; without turns, a tenant
whose admin (or script) asks again the moment its audit ends would take the slot every time and
keep every other tenant at 429 for ever. So a refusal is remembered for ``WAITING_FOR_S``
(long enough for a client honouring ``Retry-After`` to come back), and while some other tenant
waits, the tenant that ran the last audit is refused too. With two tenants asking
continuously the slot alternates; a tenant nobody competes with audits back to back.

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

    def yields(self, tenant: str, now: float) -> bool:
        """Whether ``tenant`` must let a waiting tenant go first (it ran the last audit)."""
        if tenant != self.last:
            return False
        return any(t != tenant and now - at <= self.waiting_for_s for t, at in self.refused_at.items())

    def refused(self, tenant: str, now: float) -> None:
        """``tenant`` asked and was turned away: it waits now."""
        self.refused_at[tenant] = now
        self._forget(now)

    def started(self, tenant: str, now: float) -> None:
        """``tenant``'s audit took the slot: it waits no more and is the last one."""
        self.refused_at.pop(tenant, None)
        self.last = tenant
        self._forget(now)

    def _forget(self, now: float) -> None:
        stale = [t for t, at in self.refused_at.items() if now - at > self.waiting_for_s]
        for t in stale:
            del self.refused_at[t]
