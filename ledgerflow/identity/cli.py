"""The dev issuer's operations, each recorded on ``identity.audit`` (chain ``issuer:<name>``):
``stack up`` (keys created), ``keys rotate [--purpose token|policy]`` (rotated, retired) and
``token`` (minted). A key operation is done first and then recorded; a mint is recorded
before the token is printed, so a token whose mint is not on the trail is never handed out
(``--offline`` mints without recording, for bootstrapping without Kafka)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt

from ledgerflow.auth.devkeys import (
    DevKeys,
    ensure_dev_keys,
    ensure_policy_keys,
    key_entries,
    key_home,
    rotate,
)
from ledgerflow.auth.tokens import mint_token
from ledgerflow.config import Settings
from ledgerflow.contracts.events import ANY_TENANT
from ledgerflow.contracts.payloads import Payload
from ledgerflow.errors import InfrastructureError
from ledgerflow.identity.records import issuer_chain, key_changes, mint_record
from ledgerflow.identity.trail import TrailMoved, append


def _entries(home: Path) -> list[Any]:
    return key_entries(home) if (home / "keys" / "keys.json").exists() else []


def recorded(settings: Settings, purpose: str, operation: Callable[[], DevKeys]) -> DevKeys:
    """Run a key ``operation`` on the ``purpose`` key directory and record what it changed."""
    home = key_home(settings.state_dir, purpose)
    before = _entries(home)
    keys = operation()
    changes = key_changes(purpose, before, _entries(home))
    _record(settings, [(ANY_TENANT, change) for change in changes], "the key change is made")
    return keys


def ensure_recorded(settings: Settings) -> None:
    """``stack up``: the dev token key (unless an external JWKS is used) and the dev policy key."""
    if not settings.jwks:
        recorded(settings, "token", lambda: ensure_dev_keys(settings.state_dir))
    # The dev trust store, whether defaulted or named explicitly (child processes get it spelt out).
    if settings.policy_trust_location == str(key_home(settings.state_dir, "policy") / "jwks.json"):
        recorded(settings, "policy", lambda: ensure_policy_keys(settings.state_dir))


def rotate_recorded(settings: Settings, purpose: str, grace_seconds: float) -> DevKeys:
    """``keys rotate``: a new active key of ``purpose``; the old one retires after the grace period."""
    if purpose == "policy":
        ensure_policy_keys(settings.state_dir)  # a policy key directory keeps retired keys' public halves
    home = key_home(settings.state_dir, purpose)
    return recorded(settings, purpose, lambda: rotate(home, grace_seconds))


def mint_recorded(settings: Settings, *, offline: bool = False, **claims: Any) -> str:
    """``token``: a dev token, returned only once its mint is on ``identity.audit`` (unless ``offline``)."""
    if offline:
        return mint_token(ensure_dev_keys(settings.state_dir), **claims)
    keys = recorded(settings, "token", lambda: ensure_dev_keys(settings.state_dir))
    token = mint_token(keys, **claims)
    minted = jwt.decode(token, options={"verify_signature": False})
    _record(settings, [(str(minted["tenant"]), mint_record(minted, keys.kid))], "no token was issued")
    return token


def _record(settings: Settings, items: list[tuple[str, Payload]], meanwhile: str) -> None:
    if not items:
        return
    try:
        asyncio.run(append(settings, issuer_chain(settings.issuer), items))
    except TrailMoved as exc:  # partitions added to the topic: the fix is not the bootstrap address
        raise InfrastructureError(f"not recorded on identity.audit: {exc}; {meanwhile}") from None
    except Exception as exc:  # Kafka unreachable: say what happened, never pretend it was recorded
        raise InfrastructureError(
            f"not recorded on identity.audit ({exc!r}): {meanwhile}; check LEDGERFLOW_KAFKA_BOOTSTRAP"
        ) from None
