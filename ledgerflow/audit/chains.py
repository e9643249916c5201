"""Hash chains and sequences of the topics ledgerflow's agents write (pure: no I/O).

``policy.decisions`` is chained per (tenant, conversation) — key ``decision_chain_key(tenant,
subject)`` —, ``usage.windows`` per (tenant, source partition) — ``usage_chain_key(tenant,
producer)`` —, ``training.audit`` per tenant (key = ``subject``); see
``chain_key_of`` and docs/hash-chains.md. One
``ChainVerifier`` per topic walks the records in each partition's offset order and keeps
only a few hashes per key, so a log of any length streams through in constant memory per
key.
"""

from __future__ import annotations

from ledgerflow.audit.report import Finding
from ledgerflow.contracts.chain import ChainBreak, ChainVerifier, Located, chain_key_of
from ledgerflow.contracts.events import Event
from ledgerflow.errors import ValidationError
from ledgerflow.projections.ops import Position


def finding_of(problem: ChainBreak) -> Finding:
    return Finding(
        f"chain.{problem.kind}",
        problem.topic,
        problem.partition,
        problem.offset,
        problem.key,
        f"{problem.detail} (expected sequence {problem.expected_sequence}, found {problem.found_sequence})",
    )


class ChainCheck:
    """Feed every decoded record of the chained topics; get each break as it is found."""

    def __init__(self, *, from_start: bool = True) -> None:
        self._from_start = from_start
        self._verifiers: dict[str, ChainVerifier] = {}
        self.records = 0

    def feed(self, at: Position, record: Event, *, verified: bool = False) -> Finding | None:
        """``verified``: the record's bytes were re-derived bit for bit (so its ``hash`` is the hash
        of its content, computed then): the chain walk does not hash it again."""
        verifier = self._verifiers.get(at.topic)
        if verifier is None:
            verifier = self._verifiers[at.topic] = ChainVerifier(at.topic, from_start=self._from_start)
        self.records += 1
        try:
            body = _chain_fields(record) if verified else record.to_json()
        except ValidationError as exc:  # a record with no JSON form cannot be hashed
            return Finding(
                "chain.altered",
                at.topic,
                at.partition,
                at.offset,
                record.subject,
                f"the record has no canonical JSON form: {exc}",
            )
        key = chain_key_of(body) or record.subject
        digest = record.hash if verified else None
        problem = verifier.feed(Located(at.topic, at.partition, at.offset, key, body, digest))
        return None if problem is None else finding_of(problem)

    def finish(self) -> list[Finding]:
        """Sequences never filled (``chain.missing``, ``chain.bad-genesis``); call once at the end."""
        return [finding_of(p) for v in self._verifiers.values() for p in v.finish()]


def _chain_fields(record: Event) -> dict[str, object]:
    """What the chain walk reads of a record whose hash it is given (its key and chain fields):
    the JSON form of a whole decision costs about as much as hashing it."""
    return {
        "type": record.type,
        "tenant": record.tenant,
        "subject": record.subject,
        "producer": record.producer,
        "sequence": record.sequence,
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }
