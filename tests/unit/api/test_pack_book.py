"""The catalog's book of publications: a tenant's listing checks its own versions only, each once
while the trust store's key for it is unchanged, and again when that key changes."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from ledgerflow.api import pack_book
from ledgerflow.api.pack_book import PackBook, key_fingerprint, publication
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.policy import load_rule_pack
from ledgerflow.policy.signing import NO_TRUST_STORE, PublisherKey, SignatureRefused, sign

KEY = ed25519.Ed25519PrivateKey.generate()
OTHER = ed25519.Ed25519PrivateKey.generate()
T0 = 1_764_460_150_123_456
PACK = {"rules": [{"id": "secrets", "when": {"keywords": ["password"]}, "action": "deny", "weight": 10}]}


def _published(tenant: str, version: int, *, signed: bool = True, document: str | None = None) -> Event:
    pack = load_rule_pack({**PACK, "tenant": tenant, "description": f"v{version}"}).with_version(version)
    signature = sign(pack.document(), private_key=KEY, kid="k1", alg="EdDSA", signed_at=1) if signed else None
    text = pack.canonical_json().decode() if document is None else document
    return new_event(
        "RulePackPublished",
        tenant=tenant,
        subject=tenant,
        payload=RulePackPublished(version, pack.constitution_hash, text, signature),
        producer="edge:ana",
        occurred_at_micros=T0 + version,
    )


def _book(*events: Event) -> PackBook:
    book = PackBook()
    for event in events:
        found = publication(event)
        if found is not None:
            book.add(event.tenant, found)
    return book


class Store:
    """A trust store whose key for ``k1`` can be swapped, retired or taken away."""

    def __init__(self) -> None:
        self.key: PublisherKey | None = PublisherKey("k1", KEY.public_key(), "EdDSA")
        self.asked = 0

    def lookup(self, kid: str) -> PublisherKey | None:
        self.asked += 1
        return self.key if kid == "k1" else None


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The versions ``admission`` was reached for."""
    seen: list[int] = []
    real = pack_book.admission

    def spy(payload: RulePackPublished, lookup: Any) -> tuple[str | None, str | None]:
        seen.append(payload.version)
        return real(payload, lookup)

    monkeypatch.setattr(pack_book, "admission", spy)
    return seen


def test_a_listing_checks_its_own_tenants_versions_once(checked: list[int]) -> None:
    book = _book(*[_published("acme", v) for v in range(1, 6)], _published("globex", 1, signed=False))
    store = Store()
    assert [(p.version, p.refused) for p in book.versions("globex", store.lookup)] == [(1, "unsigned")]
    assert checked == [1]  # none of acme's five
    checked.clear()
    listed = book.versions("acme", store.lookup)
    assert [(p.version, p.signer_kid, p.refused, p.rules) for p in listed] == [
        (v, "k1", None, 1) for v in range(5, 0, -1)
    ]
    assert sorted(checked) == [1, 2, 3, 4, 5]
    checked.clear()
    assert book.versions("acme", store.lookup) == listed
    assert checked == []
    assert store.asked == 2  # the store is still asked for the key, once a listing


def test_a_changed_key_checks_again_and_a_removed_one_refuses(checked: list[int]) -> None:
    book = _book(_published("acme", 1), _published("acme", 2))
    store = Store()
    book.versions("acme", store.lookup)
    checked.clear()
    store.key = PublisherKey("k1", OTHER.public_key(), "EdDSA")  # rotated under the same kid
    assert {p.refused for p in book.versions("acme", store.lookup)} == {"bad-signature"}
    assert sorted(checked) == [1, 2]
    checked.clear()
    store.key = PublisherKey("k1", KEY.public_key(), "EdDSA", not_after=0.5)  # retired before it signed
    assert {p.refused for p in book.versions("acme", store.lookup)} == {"retired-key"}
    store.key = None
    assert {p.refused for p in book.versions("acme", store.lookup)} == {"unknown-key"}
    store.key = PublisherKey("k1", KEY.public_key(), "EdDSA")
    assert {p.signer_kid for p in book.versions("acme", store.lookup)} == {"k1"}
    assert len(checked) == 6


def test_a_later_record_of_a_version_replaces_it_and_is_checked() -> None:
    first, again = _published("acme", 1), _published("acme", 1, signed=False)
    book = _book(first)
    assert [p.refused for p in book.versions("acme", Store().lookup)] == [None]
    found = publication(again)
    assert found is not None
    book.add("acme", found)
    assert [p.refused for p in book.versions("acme", Store().lookup)] == ["unsigned"]


def test_a_document_that_is_not_json_is_not_listed_and_an_odd_one_has_no_rules() -> None:
    assert publication(_published("acme", 1, document="{not json")) is None
    odd = publication(_published("acme", 2, document="[1, 2]"))
    assert odd is not None and odd.rules == 0
    assert publication(_published("acme", 3, document="[1, 2]")).digest != odd.digest  # type: ignore[union-attr]


def test_the_fingerprint_follows_the_stores_answer() -> None:
    store = Store()
    first, pinned = key_fingerprint(store.lookup, "k1")
    assert key_fingerprint(store.lookup, "k1")[0] == first
    assert pinned is not None and pinned("k1") == store.key and pinned("k2") is None
    store.key = PublisherKey("k1", KEY.public_key(), "EdDSA", not_before=5)
    assert key_fingerprint(store.lookup, "k1")[0] != first
    assert key_fingerprint(store.lookup, "k9")[0] == "untrusted"
    assert key_fingerprint(store.lookup, None)[0] == "no-kid"
    assert key_fingerprint(None, "k1") == ("no-lookup", None)

    def absent(kid: str) -> PublisherKey | None:
        raise SignatureRefused(NO_TRUST_STORE, "no file")

    name, refusing = key_fingerprint(absent, "k1")
    assert name == f"refused:{NO_TRUST_STORE}" and refusing is not None
    with pytest.raises(SignatureRefused):
        refusing("k1")
