"""Signing keys for the local stack: create, rotate with a grace period, prune.

Layout under the state directory::

    keys/key-<kid>.pem private key, PKCS#8 PEM, mode 0600
    keys/keys.json     metadata: active kid; per key its alg, created_at, retire_after
    jwks.json          public JWKS the edge trusts (written atomically)

The ``kid`` is the RFC 7638 thumbprint of the public key. A retired key stays in
``jwks.json`` until its ``retire_after`` time, so tokens signed just before a rotation
keep working for the grace period; after it the key leaves the JWKS (at the next
write) and ``prune`` deletes its private key.

Rule-pack publisher keys (``purpose="policy"``) live the same way under
``<state dir>/policy/``, with one difference: a retired policy key stays in that JWKS for
good, with its validity window as ``nbf``/``exp`` (seconds), because packs it signed while
it was valid must keep verifying for as long as decisions name them; only its private key
is deleted once the grace period has passed.

These keys are for development and tests. In production the edge only reads a JWKS
(file or URL) published by the real identity provider.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from ledgerflow.auth.jwk import PublicKey, check_algorithm, public_jwk
from ledgerflow.errors import InfrastructureError

DEFAULT_ALGORITHM = "EdDSA"
JWKS_FILENAME = "jwks.json"
KEYS_DIRNAME = "keys"
_METADATA = "keys.json"
_LOCK = ".lock"
PURPOSES = ("token", "policy")
POLICY_DIRNAME = "policy"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True, slots=True)
class DevKeys:
    """The active signing key of a state directory."""

    kid: str
    alg: str
    private_key_pem: bytes = field(repr=False)
    jwks_path: Path
    state_dir: Path


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """Public facts about one key of a state directory (what the identity audit records)."""

    kid: str
    alg: str
    created_at: float
    retire_after: float | None
    active: bool
    jwk: dict[str, str] = field(default_factory=dict, compare=False)


def key_home(state_dir: Path, purpose: str = "token") -> Path:
    """Where the keys of ``purpose`` live: the state directory (tokens) or its ``policy/``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown key purpose {purpose!r}; use one of {', '.join(PURPOSES)}")
    return state_dir / POLICY_DIRNAME if purpose == "policy" else state_dir


def ensure_policy_keys(state_dir: Path, *, now: float | None = None) -> DevKeys:
    """The active dev rule-pack publisher key (EdDSA), created if there is none."""
    return ensure_dev_keys(key_home(state_dir, "policy"), now=now, keep_retired=True)


def existing_policy_keys(state_dir: Path) -> DevKeys | None:
    """The active dev policy key if ``stack up`` (or a rotation) created one, else None."""
    home = key_home(state_dir, "policy")
    if not (_keys_dir(home) / _METADATA).exists():
        return None
    return ensure_policy_keys(state_dir)


def key_entries(state_dir: Path) -> list[KeyEntry]:
    """Every key the metadata of ``state_dir`` (a ``key_home``) knows, oldest first."""
    with _locked(state_dir):
        meta = _read_metadata(state_dir)
    entries = [
        KeyEntry(kid, e["alg"], e["created_at"], e["retire_after"], kid == meta["active"], dict(e["jwk"]))
        for kid, e in meta["keys"].items()
    ]
    return sorted(entries, key=lambda e: (e.created_at, e.kid))


def ensure_dev_keys(
    state_dir: Path, *, alg: str | None = None, now: float | None = None, keep_retired: bool = False
) -> DevKeys:
    """Return the active dev key, creating one (``alg``, default EdDSA) if there is none.

    Idempotent: an existing active key is returned whatever ``alg`` says (use
    ``rotate(..., alg=...)`` to change algorithm). ``jwks.json`` is rewritten only if
    it differs from what the metadata says it should hold (for example it was deleted).
    """
    if alg is not None:
        check_algorithm(alg)
    moment = time.time() if now is None else now
    with _locked(state_dir):
        meta = _read_metadata(state_dir)
        if meta["active"] is None:
            kid = _new_key(state_dir, meta, alg or DEFAULT_ALGORITHM, moment)
            meta["active"] = kid
            meta["keep_retired"] = keep_retired
            _write_metadata(state_dir, meta)
        _write_jwks(state_dir, meta, moment)
        return _active(state_dir, meta)


def rotate(
    state_dir: Path,
    grace_seconds: float,
    *,
    alg: str | None = None,
    now: float | None = None,
) -> DevKeys:
    """Make a new key the active signer; keep the old public key for ``grace_seconds``.

    1. Create the new key (``alg``, default: the algorithm of the current key).
    2. Mark the previous active key ``retire_after = now + grace_seconds``.
    3. Drop keys whose grace period has passed (as ``prune``).
    4. Write the metadata, then the JWKS (new key + keys still in grace).
    """
    if grace_seconds < 0:
        raise ValueError(f"grace_seconds must be >= 0, got {grace_seconds}")
    if alg is not None:
        check_algorithm(alg)
    moment = time.time() if now is None else now
    with _locked(state_dir):
        meta = _read_metadata(state_dir)
        previous = meta["active"]
        new_alg = alg or (meta["keys"][previous]["alg"] if previous else DEFAULT_ALGORITHM)
        # Step 1.
        kid = _new_key(state_dir, meta, new_alg, moment)
        # Step 2.
        if previous is not None and previous != kid:
            meta["keys"][previous]["retire_after"] = moment + grace_seconds
        meta["active"] = kid
        # Step 3.
        _drop_expired(state_dir, meta, moment)
        # Step 4.
        _write_metadata(state_dir, meta)
        _write_jwks(state_dir, meta, moment)
        return _active(state_dir, meta)


def prune(state_dir: Path, *, now: float | None = None) -> list[str]:
    """Delete keys whose grace period has passed; return their kids (sorted)."""
    moment = time.time() if now is None else now
    with _locked(state_dir):
        meta = _read_metadata(state_dir)
        removed = _drop_expired(state_dir, meta, moment)
        _write_metadata(state_dir, meta)
        _write_jwks(state_dir, meta, moment)
        return removed


def generate_private_key(alg: str) -> PrivateKey:
    """A fresh private key for ``alg`` (RS256: RSA-2048, ES256: P-256, EdDSA: Ed25519)."""
    check_algorithm(alg)
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


# -- internals ---------------------------------------------------------------------


def _keys_dir(state_dir: Path) -> Path:
    return state_dir / KEYS_DIRNAME


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    keys_dir = _keys_dir(state_dir)
    try:
        keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = open(keys_dir / _LOCK, "a+b")  # noqa: SIM115 - held for the block
    except OSError as exc:
        raise InfrastructureError(
            f"cannot create the dev key directory {keys_dir}: {exc}; "
            "check LEDGERFLOW_STATE_DIR points to a writable directory"
        ) from None
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _read_metadata(state_dir: Path) -> dict[str, Any]:
    path = _keys_dir(state_dir) / _METADATA
    if not path.exists():
        return {"version": 1, "active": None, "keys": {}}
    problem = ""
    try:
        meta = orjson.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        problem = str(exc)
    else:
        if not isinstance(meta, dict) or not isinstance(meta.get("keys"), dict):
            problem = "not a key metadata object"
    if problem:
        raise InfrastructureError(
            f"dev key metadata {path} is unreadable ({problem}); delete {_keys_dir(state_dir)} "
            f"and {state_dir / JWKS_FILENAME} to start with fresh dev keys"
        )
    return meta  # type: ignore[no-any-return,possibly-undefined]


def _write_metadata(state_dir: Path, meta: dict[str, Any]) -> None:
    data = orjson.dumps(meta, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    _atomic_write(_keys_dir(state_dir) / _METADATA, data, mode=0o600)


def _new_key(state_dir: Path, meta: dict[str, Any], alg: str, now: float) -> str:
    private_key = generate_private_key(alg)
    jwk = public_jwk(_public(private_key), alg=alg)
    kid = jwk["kid"]
    pem = private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _atomic_write(_keys_dir(state_dir) / f"key-{kid}.pem", pem, mode=0o600)
    meta["keys"][kid] = {"alg": alg, "created_at": now, "retire_after": None, "jwk": jwk}
    return kid


def _public(private_key: PrivateKey) -> PublicKey:
    return private_key.public_key()


def _live(meta: dict[str, Any], now: float) -> list[str]:
    return sorted(
        kid
        for kid, entry in meta["keys"].items()
        if entry["retire_after"] is None or entry["retire_after"] > now
    )


def _drop_expired(state_dir: Path, meta: dict[str, Any], now: float) -> list[str]:
    live = set(_live(meta, now))
    removed = sorted(kid for kid in meta["keys"] if kid not in live and kid != meta["active"])
    for kid in removed:
        if not meta.get("keep_retired"):  # a retired policy key stays public (module docstring)
            del meta["keys"][kid]
        (_keys_dir(state_dir) / f"key-{kid}.pem").unlink(missing_ok=True)
    return removed


def _published_jwk(entry: dict[str, Any], keep_retired: bool) -> dict[str, Any]:
    if not keep_retired:
        return dict(entry["jwk"])
    window = {"nbf": int(entry["created_at"])}
    if entry["retire_after"] is not None:
        window["exp"] = int(entry["retire_after"])
    return {**entry["jwk"], **window}


def _write_jwks(state_dir: Path, meta: dict[str, Any], now: float) -> None:
    # The active key first: JWKS consumers that pick "the first key" pick the signer.
    keep_retired = bool(meta.get("keep_retired"))
    kids = sorted(meta["keys"]) if keep_retired else _live(meta, now)
    if meta["active"] in kids:
        kids.remove(meta["active"])
        kids.insert(0, meta["active"])
    jwks = {"keys": [_published_jwk(meta["keys"][kid], keep_retired) for kid in kids]}
    data = orjson.dumps(jwks, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
    path = state_dir / JWKS_FILENAME
    try:
        if path.read_bytes() == data:
            return
    except OSError:
        pass
    _atomic_write(path, data, mode=0o644)


def _active(state_dir: Path, meta: dict[str, Any]) -> DevKeys:
    kid = meta["active"]
    path = _keys_dir(state_dir) / f"key-{kid}.pem"
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise InfrastructureError(
            f"the active dev key {path} is missing ({exc}); run `rotate` to make a new one "
            f"or delete {_keys_dir(state_dir)} to start over"
        ) from None
    return DevKeys(
        kid=kid,
        alg=meta["keys"][kid]["alg"],
        private_key_pem=pem,
        jwks_path=state_dir / JWKS_FILENAME,
        state_dir=state_dir,
    )


def _atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(fd, mode)
            handle.write(data)
            handle.flush()
            os.fsync(fd)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise InfrastructureError(f"cannot write {path}: {exc}") from None
