"""The policy trust store follows key rotation without a restart, and `ledgerflow policy sign|verify`
work offline against the dev policy key (no Kafka)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledgerflow.auth.devkeys import ensure_policy_keys, key_home, rotate
from ledgerflow.config import Settings
from ledgerflow.kafka.policy_trust import PolicyTrust
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.policy.signing import NO_TRUST_STORE, RETIRED_KEY, SignatureRefused, verify
from ledgerflow.rulepacks import sign_with
from ledgerflow.rulepacks_cli import policy_cli


def _doc() -> dict[str, object]:
    doc = builtin_default_pack().document()
    doc.pop("version", None)
    return {**doc, "tenant": "acme"}


def test_a_rotated_key_is_trusted_at_once_and_the_retired_one_only_for_its_window(tmp_path: Path) -> None:
    old = ensure_policy_keys(tmp_path, now=1_000)
    trust = PolicyTrust(str(tmp_path / "policy" / "jwks.json"))
    before = sign_with(old, _doc(), now=1_500)
    assert verify(before, _doc(), trust.lookup).kid == old.kid
    new = rotate(key_home(tmp_path, "policy"), 0, now=2_000)
    assert verify(sign_with(new, _doc(), now=2_001), _doc(), trust.lookup).kid == new.kid  # same trust object
    assert verify(before, _doc(), trust.lookup).kid == old.kid  # signed while valid: still verifies
    with pytest.raises(SignatureRefused) as late:
        verify(sign_with(old, _doc(), now=2_001), _doc(), trust.lookup)
    assert late.value.code == RETIRED_KEY


def test_a_missing_trust_store_refuses_every_pack(tmp_path: Path) -> None:
    keys = ensure_policy_keys(tmp_path)
    with pytest.raises(SignatureRefused) as refused:
        verify(sign_with(keys, _doc()), _doc(), PolicyTrust(str(tmp_path / "nowhere.json")).lookup)
    assert refused.value.code == NO_TRUST_STORE


def test_policy_sign_then_verify_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = Settings(state_dir=tmp_path)
    keys = ensure_policy_keys(tmp_path)
    pack = tmp_path / "pack.json"
    pack.write_text(json.dumps(_doc()))
    assert policy_cli(settings, "sign", str(pack), tenant=None, signature=None, key_path=None) == 0
    jws = capsys.readouterr().out.strip()
    (tmp_path / "pack.jws").write_text(jws)
    assert (
        policy_cli(
            settings, "verify", str(pack), tenant=None, signature=f"@{tmp_path}/pack.jws", key_path=None
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["kid"] == keys.kid
    # The same signature over another tenant's copy of the pack is refused (exit 1).
    assert policy_cli(settings, "verify", str(pack), tenant="globex", signature=jws, key_path=None) == 1
    assert "hash-mismatch" in capsys.readouterr().err
