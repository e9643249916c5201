"""Issue 18, cases 3 and 5 at token verification: the id grammar for ``tenant`` and
``sub``, a maximum token lifetime, and refusals that never quote the token (pure: real
keys, no HTTP)."""

from __future__ import annotations

import base64

import pytest

from ledgerflow.auth.devkeys import DevKeys
from ledgerflow.auth.jwks import JwksSource
from ledgerflow.auth.lifetime import DEFAULT_MAX_TOKEN_TTL_S, max_token_ttl, span
from ledgerflow.auth.tokens import mint_token
from ledgerflow.auth.verifier import TokenVerifier
from ledgerflow.errors import AuthError, ValidationError

NOW = 1_750_000_000.0
DAY = 86_400


def verifier_for(keys: DevKeys, *, max_lifetime: float | None = DAY) -> TokenVerifier:
    return TokenVerifier(
        JwksSource(keys.jwks_path),
        issuer="ledgerflow-dev",
        audience="ledgerflow",
        clock=lambda: NOW,
        max_lifetime=max_lifetime,
    )


def refusal(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert info.value.status == 401
    detail = info.value.detail
    assert "\n" not in detail and token not in detail
    return detail


# -- the id grammar -------------------------------------------------------------------------
BAD_IDS = ["X}:a", "a/b", "a b", "{acme}", "会话-1", "a\r\nb", "-lead", ".hidden", "x" * 129]


@pytest.mark.parametrize("claim", ["tenant", "sub"])
@pytest.mark.parametrize("value", BAD_IDS)
def test_a_tenant_or_subject_outside_the_id_grammar_is_refused(
    rsa_keys: DevKeys, claims, sign, claim: str, value: str
) -> None:
    detail = refusal(verifier_for(rsa_keys), sign(rsa_keys, claims(**{claim: value})))
    assert f"token claim '{claim}'" in detail
    assert "not an id" in detail or "characters long" in detail


@pytest.mark.parametrize("claim", ["tenant", "sub"])
@pytest.mark.parametrize("value", [42, "", ["acme"]])
def test_a_tenant_or_subject_that_is_not_a_string_is_refused(
    rsa_keys: DevKeys, claims, sign, claim: str, value: object
) -> None:
    assert f"token claim '{claim}'" in refusal(
        verifier_for(rsa_keys), sign(rsa_keys, claims(**{claim: value}))
    )


@pytest.mark.parametrize("value", ["acme", "acme.eu-1", "team:blue", "alice@example.com", "A_9", "x" * 128])
def test_every_id_of_the_grammar_is_accepted(rsa_keys: DevKeys, claims, sign, value: str) -> None:
    principal = verifier_for(rsa_keys).verify(sign(rsa_keys, claims(tenant=value, sub=value)))
    assert (principal.tenant, principal.sub) == (value, value)


def test_a_long_bad_tenant_is_not_quoted_whole(rsa_keys: DevKeys, claims, sign) -> None:
    detail = refusal(verifier_for(rsa_keys), sign(rsa_keys, claims(tenant="}" * 120)))
    assert "}" * 60 not in detail


@pytest.mark.parametrize(("sub", "tenant"), [("alice", "X}:a"), ("a b", "acme"), ("alice", "a/b")])
def test_mint_token_refuses_ids_outside_the_grammar(rsa_keys: DevKeys, sub: str, tenant: str) -> None:
    with pytest.raises(ValidationError, match="not an id"):
        mint_token(rsa_keys, sub=sub, tenant=tenant, roles="subscriber", now=NOW)


# -- maximum lifetime -----------------------------------------------------------------------
def test_a_token_valid_for_a_hundred_years_is_refused(rsa_keys: DevKeys, claims, sign) -> None:
    token = sign(rsa_keys, claims(exp=int(NOW) + 100 * 365 * DAY))
    detail = refusal(verifier_for(rsa_keys), token)
    assert "exceeds the maximum 86400 s (24 h)" in detail and "LEDGERFLOW_MAX_TOKEN_TTL" in detail


def test_lifetime_without_iat_counts_from_now(rsa_keys: DevKeys, claims, sign) -> None:
    assert "exceeds the maximum" in refusal(
        verifier_for(rsa_keys), sign(rsa_keys, claims(iat=None, nbf=None, exp=int(NOW) + 2 * DAY))
    )
    ok = verifier_for(rsa_keys).verify(sign(rsa_keys, claims(iat=None, nbf=None, exp=int(NOW) + DAY)))
    assert ok.expires_at == NOW + DAY


def test_an_iat_in_the_future_does_not_stretch_the_lifetime(rsa_keys: DevKeys, claims, sign) -> None:
    token = sign(rsa_keys, claims(iat=int(NOW) + 30 * DAY, nbf=None, exp=int(NOW) + 30 * DAY + 60))
    assert "exceeds the maximum" in refusal(verifier_for(rsa_keys), token)


def test_exactly_the_maximum_is_accepted_and_the_maximum_is_configurable(
    rsa_keys: DevKeys, claims, sign
) -> None:
    token = sign(rsa_keys, claims(exp=int(NOW) + DAY))
    assert verifier_for(rsa_keys).verify(token).tenant == "acme"
    assert "exceeds the maximum 3600 s (60 min)" in refusal(verifier_for(rsa_keys, max_lifetime=3600), token)


def test_a_non_numeric_iat_is_refused(rsa_keys: DevKeys, claims, sign) -> None:
    assert "'iat' must be a number" in refusal(
        verifier_for(rsa_keys), sign(rsa_keys, claims(iat="yesterday"))
    )


def test_max_token_ttl_comes_from_the_environment() -> None:
    assert max_token_ttl({}) == DEFAULT_MAX_TOKEN_TTL_S == DAY
    assert max_token_ttl({"LEDGERFLOW_MAX_TOKEN_TTL": "900"}) == 900
    for bad in ("0", "-5", "soon", "inf", "nan"):
        with pytest.raises(ValidationError, match="LEDGERFLOW_MAX_TOKEN_TTL"):
            max_token_ttl({"LEDGERFLOW_MAX_TOKEN_TTL": bad})


def test_the_verifier_reads_its_maximum_from_the_environment(rsa_keys: DevKeys, monkeypatch) -> None:
    monkeypatch.setenv("LEDGERFLOW_MAX_TOKEN_TTL", "120")
    assert verifier_for(rsa_keys, max_lifetime=None).max_lifetime == 120


def test_mint_token_refuses_a_ttl_over_the_maximum(rsa_keys: DevKeys) -> None:
    with pytest.raises(ValidationError, match="exceeds the maximum token lifetime"):
        mint_token(rsa_keys, sub="s", tenant="t", roles="subscriber", ttl_seconds=DAY + 1, now=NOW)
    mint_token(rsa_keys, sub="s", tenant="t", roles="subscriber", ttl_seconds=DAY, now=NOW)


def test_span_is_exact_and_readable() -> None:
    assert span(90) == "90 s"
    assert span(3_153_600_000) == "3153600000 s (36500 d)"


# -- no token, no codec error in a refusal ---------------------------------------------------
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.mark.parametrize(
    "token",
    [
        "abc.def.ghi",
        f"{_b64(b'not json')}.{_b64(b'{}')}.sig",
        f"{_b64(bytes(range(200, 256)))}.e30.x",
        "eyJhbGciOiJSUzI1NiJ9.%%%.x",
    ],
)
def test_a_token_that_is_not_a_jwt_gets_a_clear_refusal(rsa_keys: DevKeys, token: str) -> None:
    detail = refusal(verifier_for(rsa_keys), token)
    assert "not a JWT" in detail
    assert "codec" not in detail and "utf-8" not in detail.lower() and "decode" not in detail


def test_a_signed_token_with_an_undecodable_payload_gets_a_clear_refusal(rsa_keys: DevKeys, forge) -> None:
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    private = serialization.load_pem_private_key(rsa_keys.private_key_pem, password=None)
    header = {"alg": "RS256", "kid": rsa_keys.kid, "typ": "JWT"}
    signing_input = f"{_b64(str(header).replace(chr(39), chr(34)).encode())}.{_b64(bytes([0xFF, 0xFE]))}"
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr,call-arg]
    token = f"{signing_input}.{_b64(signature)}"
    detail = refusal(verifier_for(rsa_keys), token)
    assert "not a JWT" in detail and "codec" not in detail
