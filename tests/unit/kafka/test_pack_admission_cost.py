"""Admitting a ``policy.rules`` record: nothing is compiled before the hash and the signature
are checked, and past versions are kept uncompiled (kafka/reference.py)."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.kafka.reference import (
    PackHistory,
    admitted_pack,
    apply_reference_event,
    builtin_default_pack,
)
from ledgerflow.policy import RulePack, load_rule_pack
from ledgerflow.policy.signing import (
    HASH_MISMATCH,
    UNKNOWN_KEY,
    UNSIGNED,
    PublisherKey,
    SignatureRefused,
    sign,
)
from tests.support.compiles import count_rule_compiles

KEY = ed25519.Ed25519PrivateKey.generate()
T0 = 1_800_000_000


def lookup(kid: str) -> PublisherKey | None:
    return PublisherKey("k1", KEY.public_key(), "EdDSA") if kid == "k1" else None


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return count_rule_compiles(monkeypatch)


def _doc(description: str = "reviewed") -> dict[str, Any]:
    doc = builtin_default_pack().document()
    doc.pop("version", None)
    return {**doc, "tenant": "acme", "description": description}


def _record(version: int, doc: dict[str, Any], *, kid: str | None = "k1", claimed: str | None = None) -> Any:
    pack = load_rule_pack(doc).with_version(version)
    signature = None
    if kid is not None:
        signature = sign(pack.document(), private_key=KEY, kid=kid, alg="EdDSA", signed_at=T0)
    payload = RulePackPublished(
        version, claimed or pack.constitution_hash, pack.canonical_json().decode(), signature
    )
    return new_event(
        "RulePackPublished",
        tenant="acme",
        subject="acme",
        payload=payload,
        producer="t",
        occurred_at_micros=T0 * 1_000_000,
    )


def _refused(record: Any) -> str:
    with pytest.raises(SignatureRefused) as caught:
        admitted_pack(record.payload, lookup)
    return caught.value.code


def test_an_unsigned_record_with_a_wrong_hash_is_refused_without_compiling(compiles: list[int]) -> None:
    forged = _record(1, _doc(), kid=None, claimed="0" * 64)
    unsigned = _record(1, _doc(), kid=None)
    unknown = _record(1, _doc(), kid="stranger")
    compiles.clear()
    assert [_refused(forged), _refused(unsigned), _refused(unknown)] == [HASH_MISMATCH, UNSIGNED, UNKNOWN_KEY]
    assert compiles == []
    packs: dict[str, RulePack] = {}
    reason = apply_reference_event(forged, packs, PackHistory(), {}, lookup)
    assert reason is not None and reason.startswith(HASH_MISMATCH) and packs == {} and compiles == []


def test_a_signed_record_is_compiled_once_and_admitted() -> None:
    admitted = admitted_pack(_record(3, _doc()).payload, lookup)
    assert (admitted.version, admitted.signer_kid) == (3, "k1")


def test_past_versions_are_kept_uncompiled_and_compiled_again_on_demand(compiles: list[int]) -> None:
    history = PackHistory(compiled=2)
    packs: dict[str, RulePack] = {}
    records = [_record(v, _doc(f"v{v}")) for v in range(1, 6)]
    compiles.clear()
    for record in records:
        assert apply_reference_event(record, packs, history, {}, lookup) is None
    assert len(history) == 5 and history.compiled() == 2
    assert packs["acme"].version == 5
    compiled_when_admitted = len(compiles)
    first = history[("acme", 1)]  # evicted: compiled again from its canonical JSON
    assert len(compiles) > compiled_when_admitted
    assert (first.version, first.description, first.signer_kid) == (1, "v1", "k1")
    assert first == load_rule_pack(_doc("v1")).with_version(1)
    assert history.compiled() == 2 and ("acme", 1) in history and ("acme", 9) not in history
    again = len(compiles)
    assert history[("acme", 1)] is first and len(compiles) == again  # kept compiled once read
