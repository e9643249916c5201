"""Which outcome records are the command agents' own (pure: no I/O).

Anyone who can write to Kafka can append to ``training.audit`` or ``models.audit``. The training
and models agents (``agents/commanded.py``) read their output partition back to learn each
tenant's state and chain head, and how far the input partition was answered (the ``lf-input``
header). Taken on trust, a copy of a real outcome carrying ``lf-input: 1000000000000000`` made
every later command of the partition look answered (lost for good), and a record of the right
shape could change a tenant's state or become the chain head the next outcome links to.

The same holds for every reader that folds those topics: the reference data every policy agent
decides with and the edge shows (``kafka/reference.py``: training state, model registry, the
outcome answering a command) and the CLI waiting for its command's outcome.

So a record counts only if ``untrusted_reason`` finds nothing: it is the next link of
its tenant's chain (``eventhash.follows``: sequence one past the head's, ``prev_hash`` the head's
hash, its hash the hash of its content; these outcomes are chained per tenant, their subject),
and its ``lf-input``, if it has one, is an offset the input partition holds. A record without
``lf-input`` is legitimate (an expiry by the clock answers no command). A reader that does not know
the input partition's end (the reference data, the CLI) passes ``input_offset=None``: only the
chain is checked.

What it cannot tell: a record written from outside that links and hashes correctly (the chain
has no secret) and names an input the partition holds. Only the broker's ACLs keep such writers
out; the audit re-derives each tenant's history and reports it.
"""

from __future__ import annotations

from ledgerflow.contracts.chain import ZERO_HASH, ChainHead
from ledgerflow.contracts.eventhash import event_chain_key, follows
from ledgerflow.contracts.events import Event

__all__ = ["untrusted_reason"]


def untrusted_reason(
    record: Event, head: ChainHead | None, input_offset: int | None, input_end: int
) -> str | None:
    """None if ``record`` is trusted, else why not (one line). ``head``: its tenant's chain head in
    the partition so far (None: no record of the tenant taken yet); ``input_offset``: its
    ``lf-input`` header (None: none); ``input_end``: the input partition's end offset."""
    key = event_chain_key(record)
    if key != record.tenant:
        return f"its chain key {key!r} is not its tenant {record.tenant!r} (outcomes are chained per tenant)"
    if input_offset is not None and input_offset >= input_end:
        return f"lf-input {input_offset} but the input partition holds offsets below {input_end} only"
    if follows(record, head):
        return None
    return _unlinked(record, head)


def _unlinked(record: Event, head: ChainHead | None) -> str:
    """Why ``record`` is not the next link after ``head`` (``follows`` said it is not)."""
    seq, prev, digest = record.sequence, record.prev_hash, record.hash
    if seq is None or prev is None or digest is None:
        return "unchained (no sequence/prev_hash/hash)"
    if head is not None and (seq, digest) == (head.sequence, head.hash):
        return f"a copy of the chain head (sequence {seq})"
    want = (1, ZERO_HASH) if head is None else (head.sequence + 1, head.hash)
    if (seq, prev) != want:
        after = "no record of the tenant"
        if head is not None:
            after = f"sequence {head.sequence}, hash {head.hash[:16]}…"
        return f"sequence {seq} after prev_hash {prev[:16]}… does not follow the chain head ({after})"
    return f"hash {digest[:16]}… is not the hash of its content"
