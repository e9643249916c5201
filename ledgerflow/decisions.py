"""Old path of :mod:`ledgerflow.policy.wire` (the decision wire module moved beside the policy core).

Kept only while the agents being rewritten for throughput (policy agent) still import this
path; delete it once nothing does (``grep -rn ledgerflow.decisions``).
"""

from __future__ import annotations

from ledgerflow.policy.wire import (
    OUTCOMES,
    PRODUCER,
    chain,
    chain_key,
    decide,
    decision_payload,
    head_after,
    input_hash,
    turn_of,
)

__all__ = [
    "OUTCOMES",
    "PRODUCER",
    "chain",
    "chain_key",
    "decide",
    "decision_payload",
    "head_after",
    "input_hash",
    "turn_of",
]
