"""Real keys on disk for the auth tests (one state directory per algorithm)."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from ledgerflow.auth.devkeys import DevKeys, ensure_dev_keys

NOW = 1_750_000_000.0
ISSUER = "ledgerflow-dev"
AUDIENCE = "ledgerflow"


@pytest.fixture(scope="module", params=["RS256", "ES256", "EdDSA"])
def any_alg_keys(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    return ensure_dev_keys(tmp_path_factory.mktemp(request.param), alg=request.param, now=NOW)


@pytest.fixture(scope="module")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    return ensure_dev_keys(tmp_path_factory.mktemp("rsa"), alg="RS256", now=NOW)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def _good_claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "tenant": "acme",
        "roles": ["subscriber"],
        "iat": int(NOW),
        "nbf": int(NOW),
        "exp": int(NOW) + 600,
    }
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _sign(keys: DevKeys, claims: dict[str, Any], **headers: Any) -> str:
    """A token signed with the real private key (header fields overridable)."""
    return jwt.encode(claims, keys.private_key_pem, algorithm=keys.alg, headers={"kid": keys.kid, **headers})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _forge(header: dict[str, Any], claims: dict[str, Any], signer: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand, for headers PyJWT refuses to produce."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(signer(signing_input.encode()))}"


@pytest.fixture
def claims() -> Callable[..., dict[str, Any]]:
    """``claims(**overrides)``: valid claims at NOW; an override of ``None`` drops a claim."""
    return _good_claims


@pytest.fixture
def sign() -> Callable[..., str]:
    """``sign(keys, claims, **header)``: a token signed with the real private key."""
    return _sign


@pytest.fixture
def forge() -> Callable[..., str]:
    """``forge(header, claims, signer)``: a hand-built compact JWS."""
    return _forge
