"""Detached pack signatures (policy/signing.py): what verifies, and every way one is refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.kafka.reference import admitted_pack, builtin_default_pack
from ledgerflow.policy import load_rule_pack
from ledgerflow.policy.signing import (
    BAD_SIGNATURE,
    HASH_MISMATCH,
    MALFORMED,
    NO_TRUST_STORE,
    NOT_YET_VALID,
    RETIRED_KEY,
    UNKNOWN_KEY,
    UNSIGNED,
    PublisherKey,
    SignatureRefused,
    sign,
    signed_bytes,
    verify,
)

T0 = 1_800_000_000
KEY = ed25519.Ed25519PrivateKey.generate()
OTHER = ed25519.Ed25519PrivateKey.generate()


def _doc(tenant: str = "acme", description: str = "reviewed") -> dict[str, Any]:
    doc = builtin_default_pack().document()
    doc.pop("version", None)
    return {**doc, "tenant": tenant, "description": description}


def _trust(**keys: PublisherKey) -> Any:
    return keys.get


def _store(not_before: float | None = None, not_after: float | None = None) -> Any:
    return _trust(k1=PublisherKey("k1", KEY.public_key(), "EdDSA", not_before, not_after))


def _refusal(signature: str | None, doc: dict[str, Any], lookup: Any = None) -> str:
    with pytest.raises(SignatureRefused) as caught:
        verify(signature, doc, _store() if lookup is None else lookup)
    return caught.value.code


def test_a_signature_verifies_for_every_version_of_the_same_constitution() -> None:
    doc = _doc()
    signature = sign(doc, private_key=KEY, kid="k1", alg="EdDSA", signed_at=T0)
    pack = load_rule_pack(doc)
    signed = verify(signature, {**doc, "version": 7}, _store())
    assert (signed.kid, signed.alg, signed.signed_at) == ("k1", "EdDSA", T0)
    assert signed.constitution_hash == pack.constitution_hash
    assert signature.split(".")[1] == ""  # detached: the payload is not in the JWS
    header = jwt.get_unverified_header(signature)
    assert header["b64"] is False and header["crit"] == ["b64"]
    assert header["lf-constitution"] == f"sha256={pack.constitution_hash}"


def test_es256_signatures_verify_too() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signature = sign(_doc(), private_key=key, kid="e1", alg="ES256", signed_at=T0)
    lookup = _trust(e1=PublisherKey("e1", key.public_key(), "ES256"))
    assert verify(signature, _doc(), lookup).kid == "e1"


def test_the_signed_bytes_are_the_canonical_form_whose_hash_is_the_constitution_hash() -> None:
    import hashlib

    doc = _doc()
    assert (
        hashlib.sha256(signed_bytes({**doc, "version": 3})).hexdigest()
        == load_rule_pack(doc).constitution_hash
    )


def test_missing_and_empty_signatures_are_unsigned() -> None:
    assert _refusal(None, _doc()) == UNSIGNED
    assert _refusal("  ", _doc()) == UNSIGNED


def test_an_altered_pack_is_refused_even_when_its_header_is_rewritten() -> None:
    signature = sign(_doc(), private_key=KEY, kid="k1", alg="EdDSA", signed_at=T0)
    assert _refusal(signature, _doc(description="tampered")) == HASH_MISMATCH
    # Rewrite the header to name the tampered pack's hash: the signature no longer verifies.
    tampered = _doc(description="tampered")
    header = jwt.get_unverified_header(signature)
    header["lf-constitution"] = f"sha256={load_rule_pack(tampered).constitution_hash}"
    forged_header = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    forged = f"{forged_header}..{signature.split('.')[2]}"
    assert _refusal(forged, tampered) == BAD_SIGNATURE


def test_a_signature_by_a_key_outside_the_trust_store_is_refused() -> None:
    signature = sign(_doc(), private_key=OTHER, kid="k9", alg="EdDSA", signed_at=T0)
    assert _refusal(signature, _doc()) == UNKNOWN_KEY
    # The same kid as a trusted key, but another key's signature: it does not verify.
    impostor = sign(_doc(), private_key=OTHER, kid="k1", alg="EdDSA", signed_at=T0)
    assert _refusal(impostor, _doc()) == BAD_SIGNATURE


def test_a_retired_key_verifies_what_it_signed_while_valid_and_nothing_later() -> None:
    window = _store(not_before=T0 - 100, not_after=T0 + 100)
    before = sign(_doc(), private_key=KEY, kid="k1", alg="EdDSA", signed_at=T0 + 99)
    after = sign(_doc(), private_key=KEY, kid="k1", alg="EdDSA", signed_at=T0 + 100)
    early = sign(_doc(), private_key=KEY, kid="k1", alg="EdDSA", signed_at=T0 - 101)
    assert verify(before, _doc(), window).kid == "k1"
    assert _refusal(after, _doc(), window) == RETIRED_KEY
    assert _refusal(early, _doc(), window) == NOT_YET_VALID


@pytest.mark.parametrize(
    "signature",
    [
        "garbage",
        "a.b.c",
        "x" * 5000,
        "eyJhbGciOiJub25lIn0..",  # alg none
    ],
)
def test_malformed_signatures_are_refused(signature: str) -> None:
    assert _refusal(signature, _doc()) == MALFORMED


def test_attached_hs256_and_none_algorithm_tokens_are_refused() -> None:
    attached = jwt.encode({"x": 1}, "secret-long-enough-for-hmac-sha256-000", algorithm="HS256")
    assert _refusal(attached, _doc()) == MALFORMED
    hs = jwt.api_jws.PyJWS().encode(
        signed_bytes(_doc()),
        "secret-long-enough-for-hmac-sha256-000",
        algorithm="HS256",
        headers={"kid": "k1", "typ": "ledgerflow-constitution+jws", "iat": T0},
        is_payload_detached=True,
    )
    assert _refusal(hs, _doc()) == MALFORMED


def test_a_key_declared_for_another_algorithm_does_not_verify() -> None:
    signature = sign(_doc(), private_key=KEY, kid="k1", alg="EdDSA", signed_at=T0)
    lookup = _trust(k1=PublisherKey("k1", KEY.public_key(), "ES256"))
    assert _refusal(signature, _doc(), lookup) == BAD_SIGNATURE


def test_without_a_trust_store_every_signed_pack_is_refused() -> None:
    signature = sign(_doc(), private_key=KEY, kid="k1", alg="EdDSA", signed_at=T0)
    with pytest.raises(SignatureRefused) as caught:
        verify(signature, _doc(), None)
    assert caught.value.code == NO_TRUST_STORE


def test_admission_records_the_signer_and_refuses_a_record_claiming_another_hash() -> None:
    pack = load_rule_pack(_doc()).with_version(4)
    signature = sign(pack.document(), private_key=KEY, kid="k1", alg="EdDSA", signed_at=T0)
    record = RulePackPublished(4, pack.constitution_hash, pack.canonical_json().decode(), signature)
    admitted = admitted_pack(record, _store())
    assert (admitted.signer_kid, admitted.version) == ("k1", 4)
    assert admitted.with_version(5).signer_kid == "k1"
    lying = RulePackPublished(4, "0" * 64, pack.canonical_json().decode(), signature)
    with pytest.raises(SignatureRefused) as caught:
        admitted_pack(lying, _store())
    assert caught.value.code == HASH_MISMATCH
    with pytest.raises(SignatureRefused):
        admitted_pack(RulePackPublished(4, pack.constitution_hash, pack.canonical_json().decode()), _store())
