"""Which records of ``policy.decisions`` the policy agent's recovery takes as its own (pure: no I/O).

Anyone who can write to Kafka can append to ``policy.decisions``. Recovery reads its partition
back to learn two things: each conversation's chain head, and how far the input partition was
decided (the ``lf-input`` header). Taken on trust, a copy of a real decision carrying
``lf-input: 1000000000000000`` made every later turn look decided (lost decisions), and a
chained record of the right shape became a chain head the next genuine decision linked to.

So a record read after the recovery's starting point counts only if ``judge`` trusts it: it
answers an input the input partition holds (``lf-input`` below the partition's end) and it is
the next link of its chain — sequence one past the head's, ``prev_hash`` the head's hash (the
first of a chain: sequence 1 after ``ZERO_HASH``) — and its hash is the hash of its content
(``eventhash.event_hash``, which a property test holds equal to the audit's chain walk). Every
other record is skipped with a reason; the audit reports it (docs/reliability.md).

Records at or before a snapshot's output offset are not walked forward: the snapshot gives the
heads *after* them. ``vouched`` walks them backward from those heads instead — each chain's
last record must carry the head's hash, the one before it that record's ``prev_hash`` — so only
records the snapshot's chains lead back through feed the duplicate-delivery memory.

What it cannot tell: a record written from outside that links and hashes correctly (the chain
has no secret; anyone can compute SHA-256) and answers an input the partition holds. Only the
broker's ACLs keep such writers out; the audit re-derives every decision and names it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ledgerflow.contracts.chain import ZERO_HASH, ChainHead
from ledgerflow.contracts.eventhash import event_hash
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.errors import ValidationError
from ledgerflow.policy.wire import chain_key, head_after

NOT_A_DECISION = "not-a-decision"
MISPLACED = "subject-mismatch"
UNCHAINED = "unchained"
NO_INPUT = "no-input"
BEYOND_INPUT = "beyond-input"
DUPLICATE = "duplicate"
HEADLESS = "headless"
UNLINKED = "unlinked"
ALTERED = "altered"
UNDECODABLE = "undecodable"
REASONS: frozenset[str] = frozenset(
    {
        NOT_A_DECISION,
        MISPLACED,
        UNCHAINED,
        NO_INPUT,
        BEYOND_INPUT,
        DUPLICATE,
        HEADLESS,
        UNLINKED,
        ALTERED,
        UNDECODABLE,
    }
)
"""Why a record is skipped (a metric label each): ``headless`` is a record that continues a chain
recovery has no head for — after a snapshot that may be the snapshot's gap, not a forgery, and
the agent then recovers from the log alone (agents/policy.py)."""


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """A decoded record of the output partition, with its offset and its ``lf-input`` header."""

    offset: int
    decision: Event
    input_offset: int | None


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record recovery does not take as its own."""

    reason: str  # one of REASONS
    detail: str

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}"


@dataclass(frozen=True, slots=True)
class Trusted:
    """A record taken as the agent's own: the head it makes, the input it answers."""

    head: ChainHead
    input_offset: int
    input_event_id: str


def judge(head: ChainHead | None, record: OutputRecord, input_end: int) -> Trusted | Skipped:
    """Whether ``record`` is the next record of its chain, whose head is ``head`` (None: no record of
    the chain taken so far), answering an input below ``input_end`` (the input partition's end offset)."""
    problem = _shape_problem(record, input_end) or _hash_problem(record.decision)
    if problem is not None:
        return problem
    decision = record.decision
    seq, prev, digest = decision.sequence, decision.prev_hash, decision.hash
    assert seq is not None and prev is not None and digest is not None and record.input_offset is not None
    if head is None and not (seq == 1 and prev == ZERO_HASH):
        return Skipped(HEADLESS, f"sequence {seq} continues a chain with no record taken before it")
    if head is not None and seq == head.sequence and digest == head.hash:
        return Skipped(DUPLICATE, f"a copy of the chain head (sequence {seq})")
    if head is not None and (seq != head.sequence + 1 or prev != head.hash):
        return Skipped(
            UNLINKED,
            f"sequence {seq} after prev_hash {prev[:16]}… does not follow the chain head "
            f"(sequence {head.sequence}, hash {head.hash[:16]}…)",
        )
    return _trusted(record)


@dataclass(frozen=True, slots=True)
class Vouched:
    """``vouched``'s answer: the records taken and skipped (in log order), and whether a record that
    hashes right belongs to a chain the snapshot has no head for (the snapshot is incomplete)."""

    taken: list[Trusted]
    skipped: list[tuple[OutputRecord, Skipped]]
    headless: bool


def vouched(heads: Mapping[str, ChainHead], records: Sequence[OutputRecord], input_end: int) -> Vouched:
    """The records (in log order, all at or before the snapshot's output offset) that ``heads`` — the
    snapshot's chain heads — lead back through, and the others with their reasons."""
    expected = {key: (head.sequence, head.hash) for key, head in heads.items()}
    taken: list[Trusted] = []
    skipped: list[tuple[OutputRecord, Skipped]] = []
    headless = False
    for record in reversed(records):
        problem = _shape_problem(record, input_end) or _hash_problem(record.decision)
        if problem is not None:
            skipped.append((record, problem))
            continue
        decision = record.decision
        key, seq = chain_key(decision), decision.sequence
        want = expected.get(key)
        if want is None:
            headless = True
            skipped.append(
                (record, Skipped(HEADLESS, f"sequence {seq}: the snapshot has no head for its chain"))
            )
        elif (seq, decision.hash) != want:
            skipped.append((record, Skipped(UNLINKED, f"sequence {seq}: no later record links to it")))
        else:
            expected[key] = (want[0] - 1, str(decision.prev_hash))
            taken.append(_trusted(record))
    taken.reverse()
    skipped.reverse()
    return Vouched(taken, skipped, headless)


def _trusted(record: OutputRecord) -> Trusted:
    payload = record.decision.payload
    assert isinstance(payload, PolicyDecision) and record.input_offset is not None
    return Trusted(head_after(record.decision), record.input_offset, payload.input_event_id)


def _shape_problem(record: OutputRecord, input_end: int) -> Skipped | None:
    """What no record of the agent's lacks: a chained decision of its subject answering a held input."""
    decision = record.decision
    payload = decision.payload
    if not isinstance(payload, PolicyDecision):
        return Skipped(NOT_A_DECISION, f"a {decision.type} record")
    if payload.conversation_id != decision.subject:
        return Skipped(MISPLACED, "the decision's conversation is not its subject")
    if decision.sequence is None or decision.prev_hash is None or decision.hash is None:
        return Skipped(UNCHAINED, "no sequence/prev_hash/hash")
    if record.input_offset is None:
        return Skipped(NO_INPUT, "no lf-input header (or not a decimal offset)")
    if record.input_offset >= input_end:
        return Skipped(
            BEYOND_INPUT,
            f"lf-input {record.input_offset} but the input partition ends at offset {input_end - 1}",
        )
    return None


def _hash_problem(decision: Event) -> Skipped | None:
    assert decision.prev_hash is not None
    try:
        actual = event_hash(decision, decision.prev_hash)
    except ValidationError as exc:
        return Skipped(ALTERED, f"cannot be hashed ({exc})")
    if actual != decision.hash:
        return Skipped(
            ALTERED, f"hash {str(decision.hash)[:16]}… is not the hash of its content ({actual[:16]}…)"
        )
    return None
