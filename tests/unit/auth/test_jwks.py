from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from ledgerflow.auth.devkeys import DevKeys, ensure_dev_keys, rotate
from ledgerflow.auth.jwks import JwksSource, parse_jwks
from ledgerflow.errors import InfrastructureError

NOW = 1_750_000_000.0


def public_jwks(keys: DevKeys) -> dict:
    return json.loads(keys.jwks_path.read_text())


def test_parse_keeps_usable_keys_by_kid(rsa_keys: DevKeys) -> None:
    key_set = parse_jwks(rsa_keys.jwks_path.read_bytes(), origin="test")
    assert list(key_set.keys) == [rsa_keys.kid]
    assert key_set.skipped == ()


def test_parse_skips_symmetric_keyless_weak_and_broken_entries(rsa_keys: DevKeys) -> None:
    small_rsa = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    doc = public_jwks(rsa_keys)
    doc["keys"] += [
        {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
        {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "kid": "broken", "crv": "P-256", "x": "AA", "y": "AA"},
        {**RSAAlgorithm.to_jwk(small_rsa.public_key(), as_dict=True), "kid": "tiny"},
    ]
    key_set = parse_jwks(json.dumps(doc).encode(), origin="test")
    assert list(key_set.keys) == [rsa_keys.kid]
    reasons = " | ".join(key_set.skipped)
    assert "symmetric keys are never trusted" in reasons
    assert "no kid" in reasons
    assert "kid broken: malformed EC key" in reasons
    assert "kid tiny: RSA key of 1024 bits (needs >= 2048)" in reasons


def test_parse_ignores_private_members(rsa_keys: DevKeys) -> None:
    doc = public_jwks(rsa_keys)
    doc["keys"][0]["d"] = "AQAB"  # a leaked private exponent must not turn it into a private key
    key = parse_jwks(json.dumps(doc).encode(), origin="test").keys[rsa_keys.kid].key
    assert hasattr(key, "verify")


def test_duplicate_kid_makes_the_jwks_invalid(rsa_keys: DevKeys) -> None:
    doc = public_jwks(rsa_keys)
    doc["keys"].append(doc["keys"][0])
    with pytest.raises(InfrastructureError, match="twice"):
        parse_jwks(json.dumps(doc).encode(), origin="test")


@pytest.mark.parametrize("data", [b"not json", b"[]", b'{"keys": {}}'])
def test_non_jwks_documents_are_infrastructure_errors(data: bytes) -> None:
    with pytest.raises(InfrastructureError, match="JWKS at here"):
        parse_jwks(data, origin="here")


def test_file_source_picks_up_a_rewritten_file(state_dir: Path) -> None:
    old = ensure_dev_keys(state_dir, now=NOW)
    source = JwksSource(old.jwks_path)
    assert source.kids() == {old.kid}
    new = rotate(state_dir, grace_seconds=0, now=NOW)
    assert source.kids() == {new.kid}
    assert source.get(old.kid) is None
    assert source.get(new.kid) is not None


def test_file_source_caches_until_the_file_changes(state_dir: Path) -> None:
    keys = ensure_dev_keys(state_dir, now=NOW)
    source = JwksSource(keys.jwks_path)
    first = source.get(keys.kid)
    assert source.get(keys.kid) is first


def test_unreadable_file_is_an_infrastructure_error(tmp_path: Path) -> None:
    with pytest.raises(InfrastructureError, match="ledgerflow stack up"):
        JwksSource(tmp_path / "missing.json").get("kid")


def test_url_location_is_remote_and_path_is_not(tmp_path: Path) -> None:
    assert JwksSource("https://idp.example/.well-known/jwks.json").is_remote
    assert not JwksSource(tmp_path / "jwks.json").is_remote
    assert not JwksSource(str(tmp_path / "jwks.json")).is_remote


class FakeIdp:
    """An identity provider's JWKS endpoint, served through httpx's in-memory transport."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status = 200
        self.requests = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return httpx.Response(self.status, content=self.body)


def remote(idp: FakeIdp, clock: list[float]) -> JwksSource:
    return JwksSource(
        "https://idp.test/jwks.json",
        ttl_seconds=300,
        min_refetch_seconds=30,
        clock=lambda: clock[0],
        http_client=httpx.Client(transport=httpx.MockTransport(idp.handle)),
    )


def test_url_source_caches_for_the_ttl(state_dir: Path) -> None:
    keys = ensure_dev_keys(state_dir, now=NOW)
    idp, clock = FakeIdp(keys.jwks_path.read_bytes()), [0.0]
    source = remote(idp, clock)
    assert source.get(keys.kid) is not None
    clock[0] = 299
    assert source.get(keys.kid) is not None
    assert idp.requests == 1
    clock[0] = 300
    source.get(keys.kid)
    assert idp.requests == 2


def test_url_source_refetches_early_for_an_unknown_kid_at_most_every_30s(state_dir: Path) -> None:
    old = ensure_dev_keys(state_dir, now=NOW)
    idp, clock = FakeIdp(old.jwks_path.read_bytes()), [0.0]
    source = remote(idp, clock)
    assert source.get(old.kid) is not None
    new = rotate(state_dir, grace_seconds=60, now=NOW)
    idp.body = new.jwks_path.read_bytes()
    clock[0] = 10
    assert source.get(new.kid) is None  # too soon after the last fetch
    assert source.get("attacker-chosen-kid") is None
    assert idp.requests == 1
    clock[0] = 31
    assert source.get(new.kid) is not None
    assert idp.requests == 2


def test_url_source_keeps_cached_keys_when_the_idp_fails(state_dir: Path) -> None:
    keys = ensure_dev_keys(state_dir, now=NOW)
    idp, clock = FakeIdp(keys.jwks_path.read_bytes()), [0.0]
    source = remote(idp, clock)
    source.get(keys.kid)
    idp.status = 500
    clock[0] = 1000
    assert source.get(keys.kid) is not None
    assert idp.requests == 2


def test_url_source_without_cache_reports_an_unreachable_idp() -> None:
    idp = FakeIdp(b"")
    idp.status = 503
    with pytest.raises(InfrastructureError, match="cannot fetch the JWKS from https://idp.test"):
        remote(idp, [0.0]).get("kid")
