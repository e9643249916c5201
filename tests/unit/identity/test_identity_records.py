"""The identity audit's pure parts: key lifecycle diffs, mint records, bounded refusal counts,
and the dev policy key directory that keeps retired keys verifiable."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jwt
import orjson
import pytest

from ledgerflow.auth.devkeys import ensure_dev_keys, ensure_policy_keys, key_entries, key_home, prune, rotate
from ledgerflow.auth.exceptions import MissingCredentials
from ledgerflow.auth.jwk import jwk_thumbprint
from ledgerflow.auth.tokens import mint_token
from ledgerflow.errors import AuthError, InfrastructureError
from ledgerflow.identity.records import key_changes, mint_record
from ledgerflow.identity.refusals import (
    MAX_TENANTS,
    NO_TENANT,
    OTHER_TENANTS,
    RefusalWindow,
    claimed_tenant,
    reason_of,
)
from ledgerflow.identity.trail import moved

T0 = 1_800_000_000.0


def _unsigned(claims: object) -> str:
    body = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJub25lIn0.{body}.sig"


def test_creation_rotation_and_retirement_are_told_apart(tmp_path: Path) -> None:
    home = key_home(tmp_path, "policy")
    ensure_policy_keys(tmp_path, now=T0)
    first = key_entries(home)
    created = key_changes("policy", [], first)
    assert [(c.action, c.kid, c.previous_kid) for c in created] == [("created", first[0].kid, None)]
    assert created[0].thumbprint == jwk_thumbprint(first[0].jwk) and created[0].not_before == int(T0 * 1e6)
    rotate(home, 30, now=T0 + 10)
    second = key_entries(home)
    changes = key_changes("policy", first, second)
    assert [c.action for c in changes] == ["retired", "rotated"]
    assert changes[0].not_after == int((T0 + 40) * 1e6) and changes[1].previous_kid == first[0].kid
    assert key_changes("policy", second, key_entries(home)) == []  # nothing changed, nothing recorded


def test_a_retired_policy_key_stays_in_its_jwks_with_its_window(tmp_path: Path) -> None:
    home = key_home(tmp_path, "policy")
    old = ensure_policy_keys(tmp_path, now=T0)
    rotate(home, 30, now=T0 + 10)
    prune(home, now=T0 + 1000)
    jwks = {k["kid"]: k for k in orjson.loads((home / "jwks.json").read_bytes())["keys"]}
    assert jwks[old.kid]["nbf"] == int(T0) and jwks[old.kid]["exp"] == int(T0 + 40)
    assert not (home / "keys" / f"key-{old.kid}.pem").exists()  # its private half is gone
    # Token keys keep their behaviour: a key past its grace period leaves the JWKS.
    token_old = ensure_dev_keys(tmp_path / "t", now=T0)
    rotate(tmp_path / "t", 30, now=T0 + 10)
    prune(tmp_path / "t", now=T0 + 1000)
    kids = [k["kid"] for k in orjson.loads((tmp_path / "t" / "jwks.json").read_bytes())["keys"]]
    assert (
        token_old.kid not in kids
        and "exp" not in orjson.loads((tmp_path / "t" / "jwks.json").read_bytes())["keys"][0]
    )


def test_a_mint_record_holds_the_claims_never_the_token(tmp_path: Path) -> None:
    keys = ensure_dev_keys(tmp_path)
    token = mint_token(keys, sub="u1", tenant="acme", roles="subscriber,admin", now=T0, ttl_seconds=60)
    claims = jwt.decode(token, options={"verify_signature": False})
    record = mint_record(claims, keys.kid)
    assert (record.jti, record.sub, record.roles, record.kid) == (
        claims["jti"],
        "u1",
        ("admin", "subscriber"),
        keys.kid,
    )
    assert record.expires_at - record.issued_at == 60_000_000
    assert token.split(".")[2] not in repr(record)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (MissingCredentials("missing bearer token"), "missing"),
        (AuthError("token expired at 2026-01-01"), "expired"),
        (AuthError("unknown key id 'x' (keys may have rotated)"), "unknown-key"),
        (AuthError("token signature does not verify with key 'k'"), "bad-signature"),
        (AuthError("bearer token is not a signed JWT (expected header.payload.signature)"), "malformed"),
        (AuthError("symmetric algorithm HS256 is refused"), "bad-algorithm"),
        (AuthError("unsigned tokens (alg 'none') are refused"), "bad-algorithm"),
        (AuthError("token header 'alg' (the algorithm) must be a string: one of RS256"), "bad-algorithm"),
        (AuthError("token issuer 'evil' is not trusted"), "wrong-issuer"),
        (AuthError("token audience 'x' does not include 'ledgerflow'"), "wrong-audience"),
        (AuthError("token has no 'tenant' claim"), "invalid-claims"),
        (AuthError("malformed Authorization header"), "malformed"),
        (InfrastructureError("JWKS file is not readable"), "unavailable"),
    ],
)
def test_refusal_reasons_come_from_a_closed_set(exc: Exception, reason: str) -> None:
    assert reason_of(exc) == reason  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("token", "tenant"),
    [
        (None, NO_TENANT),
        ("garbage", NO_TENANT),
        ("a.!!!.c", NO_TENANT),
        (_unsigned({"tenant": "acme"}), "acme"),
        (_unsigned({"tenant": "x}:{evil"}), NO_TENANT),
        (_unsigned({"tenant": "a" * 200}), NO_TENANT),
        (_unsigned({"tenant": 5}), NO_TENANT),
        (_unsigned(["tenant"]), NO_TENANT),
        ("a." + "b" * 20_000 + ".c", NO_TENANT),
    ],
)
def test_the_claimed_tenant_is_an_id_or_nothing(token: str | None, tenant: str) -> None:
    assert claimed_tenant(token) == tenant


def test_a_flood_of_claimed_tenants_stays_bounded() -> None:
    window = RefusalWindow()
    for i in range(10_000):
        window.add("bad-signature", f"t{i}")
    window.add("no-such-reason", "acme")
    record = window.drain("edge:h:1:2", 0, 60)
    assert record is not None
    assert len(record.counts) == MAX_TENANTS + 2
    assert sum(c.count for c in record.counts) == 10_001
    assert {c.reason for c in record.counts} == {"bad-signature", "malformed"}
    assert [c.count for c in record.counts if c.tenant == OTHER_TENANTS] == [10_000 - MAX_TENANTS, 1]
    assert window.drain("edge:h:1:2", 60, 60) is None  # drained: the next window starts empty


def test_the_trail_is_appended_to_only_under_its_pinned_partition_count() -> None:
    assert moved(1, 1) is None
    problem = moved(1, 2)
    assert problem is not None and "\n" not in problem
    assert problem.startswith("identity.audit has 2 partitions but 1 were pinned")
    assert problem.endswith("see docs/scaling.md#adding-partitions")
