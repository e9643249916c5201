"""Outcome records outside their tenant's partition (pure: no I/O).

The training and models agents write a tenant's outcomes only into the tenant's partition of
``training.audit`` / ``models.audit`` (their command's, where Kafka's default partitioner puts the
tenant key). The reference data and the projection take none from another partition
(``kafka/placement.misplaced_reason``); the audit names such a record ``<check>.misplaced`` and
leaves it out of the chains and the fold, as they do, so one linked forgery elsewhere is one
finding, not a fork and a run of ``training.illegal`` at the genuine records after it.

``identity.audit`` is chained per Kafka key (its chain id, the records' subject), each chain in
the partition its key belongs in under the pinned count (``agents/layout.py``): a record elsewhere
(partitions were added, or it was written from outside) is ``identity.misplaced``.
"""

from __future__ import annotations

from ledgerflow.audit.report import Finding
from ledgerflow.contracts.events import Event
from ledgerflow.kafka.placement import Placements, misplaced_reason, placement
from ledgerflow.projections.ops import Position


def misplaced_outcome(check: str, at: Position, record: Event, placed: Placements | None) -> Finding | None:
    """``<check>.misplaced`` for ``record`` read at ``at`` when its tenant belongs in another
    partition under ``placed``; None when it is where its agent writes it, or no layout is known."""
    if placed is None:
        return None
    why = misplaced_reason(record.tenant, at.partition, placed)
    if why is None:
        return None
    return Finding(f"{check}.misplaced", at.topic, at.partition, at.offset, record.subject, why)


def misplaced_link(check: str, at: Position, record: Event, placed: Placements | None) -> Finding | None:
    """``<check>.misplaced`` for ``record`` of a topic chained per key (its subject, the Kafka key
    its writers use: ``identity.audit``) read at ``at`` outside its key's partition under
    ``placed``; None when it is there, or no layout is known."""
    key = record.subject.encode()
    if placed is None or placed.belongs(key, at.partition):
        return None
    why = (
        f"chain {record.subject!r} belongs in partition {placement(key, placed.partitions)} of "
        f"{placed.partitions} (the pinned count), not {at.partition}: partitions were added to the topic "
        "(its writers read a chain's head partition by partition: a fork may follow), or the record was "
        "written from outside; left out of the chain"
    )
    return Finding(f"{check}.misplaced", at.topic, at.partition, at.offset, record.subject, why)
