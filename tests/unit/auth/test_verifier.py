from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from ledgerflow.auth.devkeys import DevKeys, ensure_dev_keys, prune, rotate
from ledgerflow.auth.jwks import JwksSource
from ledgerflow.auth.tokens import mint_token
from ledgerflow.auth.verifier import MAX_TOKEN_BYTES, TokenVerifier
from ledgerflow.errors import AuthError, InfrastructureError

NOW = 1_750_000_000.0


def verifier_for(keys: DevKeys, *, now: float = NOW, leeway: float = 30.0) -> TokenVerifier:
    return TokenVerifier(
        JwksSource(keys.jwks_path),
        issuer="ledgerflow-dev",
        audience="ledgerflow",
        leeway=leeway,
        clock=lambda: now,
    )


def refused(verifier: TokenVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as info:
        verifier.verify(token)
    assert info.value.status == 401
    return info.value


def test_each_accepted_algorithm_verifies_a_minted_token(any_alg_keys: DevKeys) -> None:
    token = mint_token(any_alg_keys, sub="alice", tenant="acme", roles="subscriber,producer", now=NOW)
    principal = verifier_for(any_alg_keys).verify(token)
    assert principal.sub == "alice"
    assert principal.tenant == "acme"
    assert principal.roles == frozenset({"subscriber", "producer"})
    assert principal.kid == any_alg_keys.kid
    assert principal.expires_at == NOW + 3600
    assert principal.token_id


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_alg_none_token_is_refused(rsa_keys, claims, forge, alg: str) -> None:
    token = forge({"alg": alg, "kid": rsa_keys.kid, "typ": "JWT"}, claims(), lambda _: b"")
    assert "unsigned" in refused(verifier_for(rsa_keys), token).detail


def test_hs256_token_signed_with_the_rsa_public_key_is_refused(rsa_keys, claims, forge) -> None:
    # The classic algorithm-confusion attack: HMAC keyed with the public key PEM.
    public_pem = (
        serialization.load_pem_private_key(rsa_keys.private_key_pem, password=None)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    token = forge(
        {"alg": "HS256", "kid": rsa_keys.kid, "typ": "JWT"},
        claims(roles=["admin"]),
        lambda data: hmac.new(public_pem, data, hashlib.sha256).digest(),
    )
    error = refused(verifier_for(rsa_keys), token)
    assert "symmetric algorithm HS256 is refused" in error.detail


def test_alg_that_does_not_fit_the_key_type_is_refused(tmp_path: Path, claims, forge) -> None:
    ed = ensure_dev_keys(tmp_path, alg="EdDSA", now=NOW)
    token = forge({"alg": "ES256", "kid": ed.kid}, claims(), lambda _: b"\x00" * 64)
    error = refused(verifier_for(ed), token)
    assert "does not fit key" in error.detail
    assert "OKP" in error.detail


def test_unsupported_asymmetric_alg_is_refused(rsa_keys, claims, forge) -> None:
    token = forge({"alg": "PS256", "kid": rsa_keys.kid}, claims(), lambda _: b"x")
    assert "not accepted" in refused(verifier_for(rsa_keys), token).detail


def test_expired_token_is_refused_after_the_leeway(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(exp=int(NOW) - 31))
    assert "expired" in refused(verifier_for(rsa_keys), token).detail


def test_token_expired_within_the_leeway_is_still_accepted(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(exp=int(NOW) - 29))
    assert verifier_for(rsa_keys).verify(token).sub == "alice"


def test_token_not_yet_valid_is_refused(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(nbf=int(NOW) + 31))
    assert "not valid before" in refused(verifier_for(rsa_keys), token).detail


def test_nbf_within_the_leeway_is_accepted(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(nbf=int(NOW) + 29))
    assert verifier_for(rsa_keys).verify(token).tenant == "acme"


def test_token_without_exp_is_refused(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(exp=None))
    assert "'exp'" in refused(verifier_for(rsa_keys), token).detail


def test_wrong_audience_is_refused(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(aud="someone-else"))
    assert "audience" in refused(verifier_for(rsa_keys), token).detail


def test_audience_list_containing_ours_is_accepted(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(aud=["other", "ledgerflow"]))
    assert verifier_for(rsa_keys).verify(token).sub == "alice"


def test_wrong_issuer_is_refused(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(iss="evil-idp"))
    assert "issuer 'evil-idp' is not trusted" in refused(verifier_for(rsa_keys), token).detail


def test_unknown_kid_is_refused_with_rotation_hint(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(), kid="no-such-key")
    error = refused(verifier_for(rsa_keys), token)
    assert "unknown key id 'no-such-key'" in error.detail
    assert "this edge does not trust the key that signed the token" in error.detail
    assert "get a new token from this deployment's issuer" in error.detail


def test_missing_kid_is_refused(rsa_keys, claims, forge) -> None:
    token = forge({"alg": "RS256"}, claims(), lambda _: b"x")
    assert "no 'kid'" in refused(verifier_for(rsa_keys), token).detail


def test_tampered_payload_is_refused(rsa_keys, claims, sign) -> None:
    header, _, signature = sign(rsa_keys, claims()).split(".")
    evil = base64.urlsafe_b64encode(json.dumps(claims(tenant="victim", roles=["admin"])).encode())
    token = f"{header}.{evil.rstrip(b'=').decode()}.{signature}"
    assert "signature does not verify" in refused(verifier_for(rsa_keys), token).detail


def test_token_signed_by_another_key_with_our_kid_is_refused(tmp_path: Path, rsa_keys, claims, sign) -> None:
    impostor = ensure_dev_keys(tmp_path, alg="RS256", now=NOW)
    token = sign(impostor, claims(), kid=rsa_keys.kid)
    assert "signature does not verify" in refused(verifier_for(rsa_keys), token).detail


def test_missing_roles_claim_is_refused(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(roles=None))
    assert "'roles'" in refused(verifier_for(rsa_keys), token).detail


def test_roles_as_a_string_is_refused(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(roles="admin"))
    assert "list of role names" in refused(verifier_for(rsa_keys), token).detail


def test_unknown_role_is_refused(rsa_keys, claims, sign) -> None:
    token = sign(rsa_keys, claims(roles=["subscriber", "superuser"]))
    assert "unknown role(s) 'superuser'" in refused(verifier_for(rsa_keys), token).detail


def test_an_unknown_role_is_quoted_so_the_refusal_stays_one_line(rsa_keys, claims, sign) -> None:
    """A role name is the signer's text: it was written into the detail as it was, newlines too."""
    token = sign(rsa_keys, claims(roles=["root\nFAKE 200 granted", "x" * 500]))
    detail = refused(verifier_for(rsa_keys), token).detail
    assert "\n" not in detail and len(detail) < 200, detail
    assert "'root\\nFAKE" in detail


def test_a_lifetime_far_beyond_the_maximum_is_stated_briefly(rsa_keys, claims, sign) -> None:
    """``exp: 1e308`` was refused with a 620-character detail: the lifetime written out in full, twice."""
    detail = refused(verifier_for(rsa_keys), sign(rsa_keys, claims(exp=1e308))).detail
    assert detail.startswith("token lifetime 1e+308 s (over 1000 years) exceeds the maximum"), detail
    assert len(detail) < 200


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ({"alg": "RS256", "kid": ["k"]}, "token header is refused: its 'kid' must be a string"),
        ({"alg": "RS256", "kid": "k", "crit": ["exp"]}, "'crit' may name no extension"),
        ({"alg": ["RS256"], "kid": "k"}, "token header 'alg' (the algorithm) must be a string"),
    ],
)
def test_a_header_refused_for_its_fields_is_not_called_undecodable(
    rsa_keys, claims, forge, header: dict, expected: str
) -> None:
    """These headers decode fine; the refusal said 'not base64url-encoded JSON' (kid, crit) or
    'unsigned tokens' (a list as alg), sending the operator after the wrong fault."""
    token = forge(header, claims(), lambda _: b"sig")
    detail = refused(verifier_for(rsa_keys), token).detail
    assert expected in detail and "base64url" not in detail and "unsigned" not in detail, detail


@pytest.mark.parametrize("missing", ["sub", "tenant"])
def test_missing_identity_claim_is_refused(rsa_keys, claims, sign, missing: str) -> None:
    token = sign(rsa_keys, claims(**{missing: None}))
    assert f"'{missing}'" in refused(verifier_for(rsa_keys), token).detail


def test_principal_cannot_read_another_tenant(rsa_keys) -> None:
    token = mint_token(rsa_keys, sub="alice", tenant="acme", roles=["admin", "auditor"], now=NOW)
    principal = verifier_for(rsa_keys).verify(token)
    assert principal.can_read_tenant("acme")
    assert not principal.can_read_tenant("globex")


@pytest.mark.parametrize("token", ["", "abc", "a.b", "a.b.c.d.e", "x" * (MAX_TOKEN_BYTES + 1)])
def test_malformed_tokens_are_refused(rsa_keys, token: str) -> None:
    refused(verifier_for(rsa_keys), token)


def test_rotated_key_is_trusted_without_restarting_the_verifier(state_dir: Path) -> None:
    old = ensure_dev_keys(state_dir, alg="EdDSA", now=NOW)
    verifier = verifier_for(old)
    old_token = mint_token(old, sub="alice", tenant="acme", roles="subscriber", now=NOW)
    assert verifier.verify(old_token).kid == old.kid

    new = rotate(state_dir, grace_seconds=300, alg="ES256", now=NOW)
    new_token = mint_token(new, sub="alice", tenant="acme", roles="subscriber", now=NOW)

    assert new.kid != old.kid
    assert verifier.verify(new_token).kid == new.kid
    assert verifier.verify(old_token).kid == old.kid  # still in its grace period


def test_retired_key_is_refused_once_its_grace_period_passed(state_dir: Path) -> None:
    old = ensure_dev_keys(state_dir, now=NOW)
    late = NOW + 120
    verifier = verifier_for(old, now=late)
    old_token = mint_token(old, sub="alice", tenant="acme", roles="subscriber", now=late - 10)
    assert verifier.verify(old_token).kid == old.kid

    rotate(state_dir, grace_seconds=60, now=NOW)
    assert verifier.verify(old_token).kid == old.kid  # JWKS written at NOW: still listed
    prune(state_dir, now=late)

    error = refused(verifier, old_token)
    assert "a key rotated out" in error.detail


def test_rotation_with_zero_grace_drops_the_old_key_at_once(state_dir: Path) -> None:
    old = ensure_dev_keys(state_dir, now=NOW)
    verifier = verifier_for(old)
    old_token = mint_token(old, sub="alice", tenant="acme", roles="subscriber", now=NOW)
    verifier.verify(old_token)
    rotate(state_dir, grace_seconds=0, now=NOW)
    assert "unknown key id" in refused(verifier, old_token).detail


def test_missing_jwks_file_is_an_infrastructure_error(tmp_path: Path, rsa_keys) -> None:
    verifier = TokenVerifier(
        JwksSource(tmp_path / "absent.json"), issuer="ledgerflow-dev", audience="ledgerflow"
    )
    token = mint_token(rsa_keys, sub="alice", tenant="acme", roles="subscriber")
    with pytest.raises(InfrastructureError, match="LEDGERFLOW_JWKS"):
        verifier.verify(token)


@pytest.mark.parametrize("exp", [float("nan"), float("inf"), 10**400])
def test_an_exp_that_is_no_finite_number_is_refused(rsa_keys, claims, sign, exp) -> None:
    """NaN passes every comparison (a token that never expires, an SSE stream never told to
    re-authenticate) and an integer of 400 digits made float() raise OverflowError (a 500):
    both are a 401 naming the claim, even from a trusted signer."""
    token = sign(rsa_keys, claims(exp=exp))
    assert "'exp' must be a finite number" in refused(verifier_for(rsa_keys), token).detail
