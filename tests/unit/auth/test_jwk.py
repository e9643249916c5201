from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ledgerflow.auth.jwk import jwk_thumbprint, key_mismatch, public_jwk
from ledgerflow.errors import ValidationError

# RFC 7638 §3.1 example key and its thumbprint.
RFC7638_RSA = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPeb"
    "WKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMi"
    "cAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XP"
    "ksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
# RFC 8037 appendix A.2/A.3 Ed25519 public key and its thumbprint.
RFC8037_OKP = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}


def test_thumbprint_matches_rfc7638_example() -> None:
    assert jwk_thumbprint(RFC7638_RSA) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_thumbprint_matches_rfc8037_example() -> None:
    assert jwk_thumbprint(RFC8037_OKP) == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def test_thumbprint_of_a_symmetric_key_is_refused() -> None:
    with pytest.raises(ValidationError):
        jwk_thumbprint({"kty": "oct", "k": "c2VjcmV0"})


def test_thumbprint_names_missing_members() -> None:
    with pytest.raises(ValidationError, match="y"):
        jwk_thumbprint({"kty": "EC", "crv": "P-256", "x": "abc"})


def test_public_jwk_has_kid_alg_and_use() -> None:
    jwk = public_jwk(ec.generate_private_key(ec.SECP256R1()).public_key(), alg="ES256")
    assert jwk["kid"] == jwk_thumbprint(jwk)
    assert (jwk["alg"], jwk["use"], jwk["crv"]) == ("ES256", "sig", "P-256")


def test_public_jwk_refuses_a_key_that_does_not_fit_the_alg() -> None:
    with pytest.raises(ValidationError, match="cannot verify RS256"):
        public_jwk(ed25519.Ed25519PrivateKey.generate().public_key(), alg="RS256")


@pytest.mark.parametrize(
    ("jwk", "alg"),
    [
        ({"kty": "RSA"}, "RS256"),
        ({"kty": "EC", "crv": "P-256"}, "ES256"),
        ({"kty": "OKP", "crv": "Ed25519"}, "EdDSA"),
    ],
)
def test_matching_key_and_alg_is_accepted(jwk: dict, alg: str) -> None:
    assert key_mismatch(jwk, alg) is None


@pytest.mark.parametrize(
    ("jwk", "alg", "reason"),
    [
        ({"kty": "RSA"}, "HS256", "not accepted"),
        ({"kty": "RSA"}, "ES256", "key type 'RSA'"),
        ({"kty": "EC", "crv": "P-384"}, "ES256", "curve 'P-384'"),
        ({"kty": "OKP", "crv": "X25519"}, "EdDSA", "curve 'X25519'"),
        ({"kty": "RSA", "alg": "RS512"}, "RS256", "declared for RS512"),
        ({"kty": "RSA", "use": "enc"}, "RS256", "use 'enc'"),
    ],
)
def test_key_that_does_not_fit_the_alg_is_refused(jwk: dict, alg: str, reason: str) -> None:
    mismatch = key_mismatch(jwk, alg)
    assert mismatch is not None and reason in mismatch
