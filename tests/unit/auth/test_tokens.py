from __future__ import annotations

import jwt
import pytest

from ledgerflow.auth.devkeys import DevKeys
from ledgerflow.auth.tokens import mint_token
from ledgerflow.errors import ValidationError

NOW = 1_750_000_000.0


def unverified(token: str) -> tuple[dict, dict]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def test_minted_token_carries_the_contract_claims(rsa_keys: DevKeys) -> None:
    token = mint_token(
        rsa_keys, sub="svc", tenant="acme", roles=["producer", "admin"], ttl_seconds=60, now=NOW
    )
    header, claims = unverified(token)
    assert header == {"alg": "RS256", "kid": rsa_keys.kid, "typ": "JWT"}
    assert claims["iss"] == "ledgerflow-dev"
    assert claims["aud"] == "ledgerflow"
    assert (claims["sub"], claims["tenant"]) == ("svc", "acme")
    assert claims["roles"] == ["admin", "producer"]
    assert (claims["iat"], claims["nbf"], claims["exp"]) == (NOW, NOW, NOW + 60)
    assert claims["jti"]


def test_issuer_and_audience_can_be_overridden(rsa_keys: DevKeys) -> None:
    _, claims = unverified(
        mint_token(rsa_keys, sub="s", tenant="t", roles="auditor", issuer="idp", audience="api", now=NOW)
    )
    assert (claims["iss"], claims["aud"]) == ("idp", "api")


def test_roles_from_a_comma_separated_string(rsa_keys: DevKeys) -> None:
    _, claims = unverified(mint_token(rsa_keys, sub="s", tenant="t", roles="subscriber, producer", now=NOW))
    assert claims["roles"] == ["producer", "subscriber"]


def test_unknown_role_is_a_validation_error(rsa_keys: DevKeys) -> None:
    with pytest.raises(ValidationError, match="root"):
        mint_token(rsa_keys, sub="s", tenant="t", roles=["subscriber", "root"])


def test_no_roles_is_a_validation_error(rsa_keys: DevKeys) -> None:
    with pytest.raises(ValidationError, match="at least one role"):
        mint_token(rsa_keys, sub="s", tenant="t", roles="")


@pytest.mark.parametrize(("sub", "tenant"), [("", "t"), ("s", ""), ("s", " t")])
def test_empty_subject_or_tenant_is_a_validation_error(rsa_keys: DevKeys, sub: str, tenant: str) -> None:
    with pytest.raises(ValidationError):
        mint_token(rsa_keys, sub=sub, tenant=tenant, roles="subscriber")


def test_non_positive_ttl_is_a_validation_error(rsa_keys: DevKeys) -> None:
    with pytest.raises(ValidationError, match="ttl"):
        mint_token(rsa_keys, sub="s", tenant="t", roles="subscriber", ttl_seconds=0)
