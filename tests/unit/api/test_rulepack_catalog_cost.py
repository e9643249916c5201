"""The rule pack catalog checks every listed version without compiling it again on each read."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ledgerflow.api import pack_book
from ledgerflow.api.rulepack_catalog import catalog
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.policy import load_rule_pack
from ledgerflow.policy.signing import PublisherKey, sign
from tests.support.compiles import count_rule_compiles

KEY = ed25519.Ed25519PrivateKey.generate()
T0 = 1_764_460_150_123_456


def trusted(kid: str) -> PublisherKey | None:
    return PublisherKey("k1", KEY.public_key(), "EdDSA") if kid == "k1" else None


def nobody(kid: str) -> PublisherKey | None:
    return None


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    monkeypatch.setattr(pack_book, "_verdicts", OrderedDict())
    return count_rule_compiles(monkeypatch)


def _published(version: int, description: str, *, signed: bool = True) -> Any:
    doc = builtin_default_pack().document()
    doc.pop("version", None)
    pack = load_rule_pack({**doc, "tenant": "acme", "description": description}).with_version(version)
    signature = sign(pack.document(), private_key=KEY, kid="k1", alg="EdDSA", signed_at=1) if signed else None
    payload = RulePackPublished(version, pack.constitution_hash, pack.canonical_json().decode(), signature)
    return new_event(
        "RulePackPublished",
        tenant="acme",
        subject="acme",
        payload=payload,
        producer="e",
        occurred_at_micros=T0,
    )


def test_listing_again_compiles_nothing_and_an_unsigned_version_is_never_compiled(
    compiles: list[int],
) -> None:
    events = [_published(v, f"v{v}") for v in (1, 2, 3)] + [_published(4, "v4", signed=False)]
    compiles.clear()
    first = [(p.version, p.signer_kid, p.refused) for p in catalog(events, "acme", trusted)]
    assert first == [(4, None, "unsigned"), (3, "k1", None), (2, "k1", None), (1, "k1", None)]
    per_version = len(compiles) // 3
    assert per_version >= 1 and len(compiles) == 3 * per_version  # each signed document once
    compiles.clear()
    assert [(p.version, p.signer_kid, p.refused) for p in catalog(events, "acme", trusted)] == first
    assert compiles == []
    # The signature is still checked on every listing: the trust store may have changed.
    assert {p.refused for p in catalog(events, "acme", nobody)} == {"unknown-key", "unsigned"}
    assert compiles == []
