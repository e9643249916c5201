"""``ledgerflow policy publish|sign|verify``: rule packs and their detached signatures."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ledgerflow.auth.devkeys import existing_policy_keys
from ledgerflow.auth.jwk import public_jwk
from ledgerflow.config import Settings
from ledgerflow.errors import ValidationError
from ledgerflow.kafka.policy_trust import PolicyTrust
from ledgerflow.policy import load_rule_pack
from ledgerflow.policy.signing import SignatureRefused, sign, verify
from ledgerflow.policy.validation import parse_rule_pack_text
from ledgerflow.rulepacks import publish_pack, sign_with


def read_pack_file(path: str, tenant: str | None) -> dict[str, Any]:
    """The pack document of a JSON or YAML file (``tenant`` overrides its tenant; no version)."""
    text = Path(path).read_text(encoding="utf-8")
    document: dict[str, Any] = parse_rule_pack_text(
        text, fmt="yaml" if path.endswith((".yaml", ".yml")) else "json"
    )
    if tenant:
        document["tenant"] = tenant
    document.pop("version", None)
    return document


def signature_arg(value: str | None) -> str | None:
    """``--signature``: the JWS itself, or ``@PATH`` of a file holding it."""
    if value is None:
        return None
    return Path(value[1:]).read_text(encoding="utf-8").strip() if value.startswith("@") else value.strip()


def sign_pack(settings: Settings, document: dict[str, Any], key_path: str | None) -> str:
    """A detached signature by the PEM key at ``key_path`` (kid = its RFC 7638 thumbprint), else by
    the dev policy key."""
    if key_path is None:
        keys = existing_policy_keys(settings.state_dir)
        if keys is None:
            raise ValidationError(
                "no dev policy key: run `ledgerflow stack up` (or `ledgerflow keys rotate --purpose "
                "policy`), or pass --key PATH to a PEM private key"
            )
        return sign_with(keys, document)
    private_key = load_pem_private_key(Path(key_path).read_bytes(), password=None)
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        alg = "EdDSA"
    elif isinstance(private_key, ec.EllipticCurvePrivateKey):
        alg = "ES256"
    else:
        raise ValidationError(f"{key_path}: packs are signed with Ed25519 (EdDSA) or P-256 (ES256) keys")
    kid = public_jwk(private_key.public_key(), alg=alg)["kid"]
    pack = load_rule_pack(document)
    return sign(pack.document(), private_key=private_key, kid=kid, alg=alg, signed_at=int(time.time()))


def policy_cli(
    settings: Settings,
    action: str,
    path: str,
    *,
    tenant: str | None,
    signature: str | None,
    key_path: str | None,
) -> int:
    document = read_pack_file(path, tenant)
    if action == "sign":
        print(sign_pack(settings, document, key_path))
        return 0
    if action == "verify":
        given = signature_arg(signature)
        if given is None:
            raise ValidationError("verify needs --signature JWS (or @PATH)")
        try:
            pack = load_rule_pack(document)
            signed = verify(given, pack.document(), PolicyTrust.of(settings).lookup)
        except SignatureRefused as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 1
        print(
            json.dumps(
                {
                    "kid": signed.kid,
                    "alg": signed.alg,
                    "constitution_hash": signed.constitution_hash,
                    "signed_at": signed.signed_at,
                }
            )
        )
        return 0
    published = asyncio.run(
        publish_pack(settings, document, producer_name="cli", signature=signature_arg(signature))
    )
    print(
        json.dumps(
            {
                "tenant": published.tenant,
                "version": published.version,
                "constitution_hash": published.constitution_hash,
                "offset": published.offset,
                "signer_kid": published.signer_kid,
            }
        )
    )
    return 0
