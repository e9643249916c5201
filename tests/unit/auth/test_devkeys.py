from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from ledgerflow.auth.devkeys import ensure_dev_keys, prune, rotate
from ledgerflow.auth.jwk import jwk_thumbprint
from ledgerflow.errors import ValidationError

NOW = 1_750_000_000.0


def jwks_kids(state_dir: Path) -> list[str]:
    return [key["kid"] for key in json.loads((state_dir / "jwks.json").read_text())["keys"]]


def metadata(state_dir: Path) -> dict:
    return json.loads((state_dir / "keys" / "keys.json").read_text())


def test_ensure_creates_an_ed25519_key_by_default(state_dir: Path) -> None:
    keys = ensure_dev_keys(state_dir, now=NOW)
    assert keys.alg == "EdDSA"
    assert keys.private_key_pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    jwk = json.loads(keys.jwks_path.read_text())["keys"][0]
    assert (jwk["kty"], jwk["crv"], jwk["alg"], jwk["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert "d" not in jwk  # the JWKS holds public keys only


def test_private_key_file_is_readable_by_owner_only(state_dir: Path) -> None:
    keys = ensure_dev_keys(state_dir, now=NOW)
    pem = state_dir / "keys" / f"key-{keys.kid}.pem"
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600
    assert pem.read_bytes() == keys.private_key_pem


def test_kid_is_the_rfc7638_thumbprint_of_the_public_key(state_dir: Path) -> None:
    keys = ensure_dev_keys(state_dir, now=NOW)
    jwk = json.loads(keys.jwks_path.read_text())["keys"][0]
    assert keys.kid == jwk["kid"] == jwk_thumbprint(jwk)


def test_ensure_is_idempotent_and_leaves_the_jwks_untouched(state_dir: Path) -> None:
    first = ensure_dev_keys(state_dir, now=NOW)
    before = first.jwks_path.stat().st_mtime_ns, first.jwks_path.stat().st_ino
    second = ensure_dev_keys(state_dir, alg="RS256", now=NOW + 5)
    assert second == first  # an existing key wins over the requested alg
    assert (first.jwks_path.stat().st_mtime_ns, first.jwks_path.stat().st_ino) == before
    assert len(list((state_dir / "keys").glob("*.pem"))) == 1


def test_ensure_rewrites_a_deleted_jwks(state_dir: Path) -> None:
    keys = ensure_dev_keys(state_dir, now=NOW)
    keys.jwks_path.unlink()
    ensure_dev_keys(state_dir, now=NOW)
    assert jwks_kids(state_dir) == [keys.kid]


@pytest.mark.parametrize(("alg", "kty"), [("RS256", "RSA"), ("ES256", "EC"), ("EdDSA", "OKP")])
def test_each_algorithm_gets_the_matching_key_type(state_dir: Path, alg: str, kty: str) -> None:
    keys = ensure_dev_keys(state_dir, alg=alg, now=NOW)
    jwk = json.loads(keys.jwks_path.read_text())["keys"][0]
    assert (keys.alg, jwk["alg"], jwk["kty"]) == (alg, alg, kty)


def test_unsupported_algorithm_is_a_validation_error(state_dir: Path) -> None:
    with pytest.raises(ValidationError, match="HS256"):
        ensure_dev_keys(state_dir, alg="HS256")


def test_rotate_activates_a_new_key_and_keeps_the_old_one_for_the_grace_period(
    state_dir: Path,
) -> None:
    old = ensure_dev_keys(state_dir, alg="ES256", now=NOW)
    new = rotate(state_dir, grace_seconds=90, now=NOW + 10)
    assert new.kid != old.kid
    assert new.alg == "ES256"  # alg defaults to the current key's
    assert jwks_kids(state_dir) == [new.kid, old.kid]  # active signer first
    meta = metadata(state_dir)
    assert meta["active"] == new.kid
    assert meta["keys"][old.kid]["retire_after"] == NOW + 100
    assert meta["keys"][new.kid]["retire_after"] is None
    assert ensure_dev_keys(state_dir, now=NOW + 20) == new


def test_rotate_can_change_algorithm(state_dir: Path) -> None:
    ensure_dev_keys(state_dir, now=NOW)
    assert rotate(state_dir, grace_seconds=10, alg="RS256", now=NOW).alg == "RS256"


def test_rotate_refuses_a_negative_grace(state_dir: Path) -> None:
    ensure_dev_keys(state_dir, now=NOW)
    with pytest.raises(ValueError, match="grace_seconds"):
        rotate(state_dir, grace_seconds=-1, now=NOW)


def test_prune_keeps_keys_still_in_grace(state_dir: Path) -> None:
    old = ensure_dev_keys(state_dir, now=NOW)
    new = rotate(state_dir, grace_seconds=60, now=NOW)
    assert prune(state_dir, now=NOW + 59) == []
    assert jwks_kids(state_dir) == [new.kid, old.kid]


def test_prune_removes_expired_keys_from_jwks_metadata_and_disk(state_dir: Path) -> None:
    old = ensure_dev_keys(state_dir, now=NOW)
    new = rotate(state_dir, grace_seconds=60, now=NOW)
    assert prune(state_dir, now=NOW + 60) == [old.kid]
    assert jwks_kids(state_dir) == [new.kid]
    assert old.kid not in metadata(state_dir)["keys"]
    assert not (state_dir / "keys" / f"key-{old.kid}.pem").exists()


def test_prune_never_removes_the_active_key(state_dir: Path) -> None:
    keys = ensure_dev_keys(state_dir, now=NOW)
    assert prune(state_dir, now=NOW + 10**9) == []
    assert jwks_kids(state_dir) == [keys.kid]


def test_writes_leave_no_temporary_files(state_dir: Path) -> None:
    ensure_dev_keys(state_dir, now=NOW)
    rotate(state_dir, grace_seconds=5, now=NOW)
    prune(state_dir, now=NOW + 10)
    leftovers = [p.name for p in state_dir.rglob("*.tmp")]
    assert leftovers == []


def test_repr_does_not_show_the_private_key(state_dir: Path) -> None:
    keys = ensure_dev_keys(state_dir, now=NOW)
    assert "PRIVATE" not in repr(keys)
