"""Verified before projected: the checks a chained record passes before it may reach a read model (pure).

Chained records are decisions (chained per conversation) and ``training.audit`` outcomes
(chained per tenant, their subject). ``integrity_problem`` is the stateless half: such a
record must carry its chain fields and its ``hash`` must be the hash of its content (one
SHA-256 over its canonical JSON). The stateful half — does it link to the last record
projected of its chain? — runs in Redis, atomically with the write (``ops.ChainLink``), so a
live projection and a rebuild from the log refuse exactly the same records.

``placement_problem`` is where a training outcome was read: the training agent writes a tenant's
outcomes only into the partition of its command, where Kafka's default partitioner put the tenant
key (``kafka/placement.py``, under the worker group's pinned count, else today's). One read from
another partition of ``training.audit`` — linked to the real head and hashed right, which anyone
can do (the chain has no secret) — is refused before projection, live and in rebuilds alike: read
first, it would become the tenant's head, show in ``GET /v1/training/status``, and the real
chain's next record would be refused as a broken link.
"""

from __future__ import annotations

from ledgerflow.contracts.eventhash import event_hash
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.errors import ValidationError
from ledgerflow.kafka.placement import Placements, misplaced_reason
from ledgerflow.projections.conversations import TRAINING_OUTCOMES

UNCHAINED = "unchained"
ALTERED = "altered"
MISMATCHED = "subject-mismatch"
MISPLACED = "misplaced"


def integrity_problem(event: Event) -> str | None:
    """Why a decision or training outcome cannot be projected (``"<reason>: <detail>"``), or
    None; other records pass."""
    if isinstance(event.payload, TRAINING_OUTCOMES):
        return _training_problem(event)
    if not isinstance(event.payload, PolicyDecision):
        return None
    if event.payload.conversation_id != event.subject:
        # A decision is chained under its subject; projected into another conversation, its chain
        # head and its read model would be two conversations' (and two slots on a Redis Cluster).
        # The policy agent never writes one: such a record was forged outside it.
        return (
            f"{MISMATCHED}: the decision's conversation is not its subject (not written by the policy agent)"
        )
    return _chain_problem(event, "decision", "policy agent")


def _training_problem(event: Event) -> str | None:
    if event.subject != event.tenant:
        # Outcomes are chained per tenant (their subject); the head checked is the tenant's.
        return f"{MISMATCHED}: the training outcome's subject is not its tenant (not the training agent's)"
    return _chain_problem(event, "training outcome", "training agent")


def _chain_problem(event: Event, what: str, writer: str) -> str | None:
    """The chain fields are there and ``hash`` is the hash of the content."""
    if event.sequence is None or event.prev_hash is None or event.hash is None:
        return f"{UNCHAINED}: the {what} has no sequence/prev_hash/hash (not written by the {writer})"
    try:
        actual = event_hash(event, event.prev_hash)
    except ValidationError as exc:
        return f"{ALTERED}: the {what} cannot be hashed ({exc})"
    if actual != event.hash:
        return f"{ALTERED}: hash {event.hash[:16]}… does not match the content ({actual[:16]}…)"
    return None


def placement_problem(event: Event, partition: int, placed: Placements | None) -> str | None:
    """Why a training outcome read from ``partition`` of ``training.audit`` cannot be projected:
    its tenant's outcomes are not written there under ``placed`` (``"misplaced: <detail>"``; None:
    no layout known, nothing is trusted), or None; other records pass."""
    if not isinstance(event.payload, TRAINING_OUTCOMES):
        return None
    why = misplaced_reason(event.tenant, partition, placed)
    return None if why is None else f"{MISPLACED}: {why}"


def reason_of(problem: str) -> str:
    """The short reason (a metric label) of ``integrity_problem``'s answer."""
    return problem.split(":", 1)[0]
