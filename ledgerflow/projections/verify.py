"""Verified before projected: the checks a decision passes before it may reach a read model (pure).

``integrity_problem`` is the stateless half: a decision must carry its chain fields and its
``hash`` must be the hash of its content (one SHA-256 over its canonical JSON). The
stateful half — does it link to the last decision projected of its chain? — runs in Redis,
atomically with the write (``ops.ChainLink``), so a live projection and a rebuild from the
log refuse exactly the same records.
"""

from __future__ import annotations

from ledgerflow.contracts.eventhash import event_hash
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.errors import ValidationError

UNCHAINED = "unchained"
ALTERED = "altered"
MISMATCHED = "subject-mismatch"


def integrity_problem(event: Event) -> str | None:
    """Why a decision cannot be projected (``"<reason>: <detail>"``), or None; other records pass."""
    if not isinstance(event.payload, PolicyDecision):
        return None
    if event.payload.conversation_id != event.subject:
        # A decision is chained under its subject; projected into another conversation, its chain
        # head and its read model would be two conversations' (and two slots on a Redis Cluster).
        # The policy agent never writes one: such a record was forged outside it.
        return (
            f"{MISMATCHED}: the decision's conversation is not its subject (not written by the policy agent)"
        )
    if event.sequence is None or event.prev_hash is None or event.hash is None:
        return f"{UNCHAINED}: the decision has no sequence/prev_hash/hash (not written by the policy agent)"
    try:
        actual = event_hash(event, event.prev_hash)
    except ValidationError as exc:
        return f"{ALTERED}: the decision cannot be hashed ({exc})"
    if actual != event.hash:
        return f"{ALTERED}: hash {event.hash[:16]}… does not match the content ({actual[:16]}…)"
    return None


def reason_of(problem: str) -> str:
    """The short reason (a metric label) of ``integrity_problem``'s answer."""
    return problem.split(":", 1)[0]
