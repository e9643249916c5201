"""A pack whose pattern backtracks without bound, written straight to ``policy.rules``
(not through the edge, which refuses it), is refused by the reference reader's fold: no
worker, edge or audit ever runs it."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric import ed25519

from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.kafka.reference import apply_reference_event
from ledgerflow.policy import RulePack, TrainingState
from ledgerflow.policy.rulepack import constitution_hash
from ledgerflow.policy.signing import PublisherKey, sign

KEY = ed25519.Ed25519PrivateKey.generate()

HOSTILE = {
    "tenant": "acme",
    "rules": [{"id": "r1", "when": {"patterns": [r"^(\w+\s?)+$"]}, "action": "review", "weight": 1.0}],
}


def test_a_pack_with_an_exponential_pattern_is_refused_by_the_fold() -> None:
    # Signed by a trusted key and with its true hash: only the pattern can refuse it.
    signature = sign(HOSTILE, private_key=KEY, kid="k1", alg="EdDSA", signed_at=1_780_000_000)
    payload = RulePackPublished(
        version=1,
        constitution_hash=constitution_hash(HOSTILE),
        document=json.dumps(HOSTILE),
        signature=signature,
    )
    trusted = {"k1": PublisherKey("k1", KEY.public_key(), "EdDSA", None, None)}.get
    event = new_event(
        "RulePackPublished",
        tenant="acme",
        subject="acme",
        payload=payload,
        producer="edge:admin-1",
        occurred_at_micros=1_780_000_000_000_000,
    )
    packs: dict[str, RulePack] = {}
    history: dict[tuple[str, int], RulePack] = {}
    training: dict[str, TrainingState] = {}
    reason = apply_reference_event(event, packs, history, training, trusted)
    assert reason is not None and reason.startswith("invalid-rule-pack:"), reason
    assert "backtracks exponentially" in reason and "^(" in reason
    assert packs == {} and history == {}
