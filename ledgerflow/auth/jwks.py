"""Where the edge's trusted public keys come from: a JWKS file or URL.

A file is re-read when it changes (mtime, size or inode), so a key written by
``ledgerflow.auth.devkeys.rotate`` is trusted without restarting the edge. A URL is
cached for ``ttl_seconds`` and fetched again early (at most every
``min_refetch_seconds``) when a token names a kid the cache does not hold.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from jwt.exceptions import PyJWTError

from ledgerflow.auth.jwk import PublicKey
from ledgerflow.errors import InfrastructureError

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

_MIN_RSA_BITS = 2048
_PUBLIC_MEMBERS: dict[str, tuple[str, ...]] = {
    "RSA": ("kty", "n", "e"),
    "EC": ("kty", "crv", "x", "y"),
    "OKP": ("kty", "crv", "x"),
}
_LOADERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "RSA": RSAAlgorithm.from_jwk,
    "EC": ECAlgorithm.from_jwk,
    "OKP": OKPAlgorithm.from_jwk,
}


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """One usable public key of a JWKS."""

    kid: str
    jwk: Mapping[str, Any]
    key: PublicKey


@dataclass(frozen=True, slots=True)
class KeySet:
    """A parsed JWKS: usable keys by kid, and why other entries were skipped."""

    keys: Mapping[str, TrustedKey]
    skipped: tuple[str, ...] = ()


def parse_jwks(data: bytes, *, origin: str) -> KeySet:
    """Parse a JWKS document (pure). Raise ``InfrastructureError`` if it is not one.

    Entries without a ``kid``, symmetric (``oct``) keys, unknown key types, RSA keys
    under 2048 bits and malformed keys are skipped (listed in ``skipped``); a kid used
    twice makes the whole document invalid, since it would be ambiguous.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InfrastructureError(f"JWKS at {origin} is not JSON ({exc})") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise InfrastructureError(f'JWKS at {origin} has no "keys" list')
    keys: dict[str, TrustedKey] = {}
    skipped: list[str] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            skipped.append(f"entry {index}: not an object")
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            skipped.append(f"entry {index}: no kid")
            continue
        if kid in keys:
            raise InfrastructureError(
                f"JWKS at {origin} lists kid {kid!r} twice; fix the JWKS so each kid is unique"
            )
        reason, key = _load_public_key(entry)
        if key is None:
            skipped.append(f"kid {kid}: {reason}")
            continue
        keys[kid] = TrustedKey(kid=kid, jwk=dict(entry), key=key)
    return KeySet(keys=keys, skipped=tuple(skipped))


def _load_public_key(entry: Mapping[str, Any]) -> tuple[str, PublicKey | None]:
    kty = entry.get("kty")
    if kty == "oct":
        return "symmetric keys are never trusted", None
    members = _PUBLIC_MEMBERS.get(str(kty))
    if members is None:
        return f"unsupported key type {kty!r}", None
    public = {name: entry[name] for name in members if name in entry}
    if len(public) != len(members):
        return f"missing member(s) {sorted(set(members) - set(public))}", None
    try:
        key = _LOADERS[str(kty)](public)
    except (PyJWTError, ValueError, TypeError) as exc:
        return f"malformed {kty} key ({exc})", None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < _MIN_RSA_BITS:
        return f"RSA key of {key.key_size} bits (needs >= {_MIN_RSA_BITS})", None
    return "", key


class JwksSource:
    """Trusted keys from a JWKS file path or an ``http(s)://`` URL.

    ``get(kid)`` is cheap for a file (one ``stat``); for a URL it may fetch, so callers
    on an event loop should run it in a thread when ``is_remote`` (the Starlette
    backend does).
    """

    def __init__(
        self,
        location: str | Path,
        *,
        ttl_seconds: float = 300.0,
        min_refetch_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        http_client: httpx.Client | None = None,
    ) -> None:
        text = str(location)
        self.is_remote = isinstance(location, str) and text.startswith(("http://", "https://"))
        self.location = text
        self._path = None if self.is_remote else Path(location)
        self._ttl = ttl_seconds
        self._min_refetch = min_refetch_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._http = http_client
        self._lock = threading.Lock()
        self._keys: Mapping[str, TrustedKey] | None = None
        self._file_signature: tuple[int, int, int] | None = None
        self._fetched_at: float | None = None

    def __repr__(self) -> str:
        return f"JwksSource({self.location!r})"

    def get(self, kid: str) -> TrustedKey | None:
        """The trusted key named ``kid``, or ``None`` if the JWKS does not hold it."""
        with self._lock:
            keys = self._current()
            if kid not in keys and self.is_remote and self._may_refetch():
                keys = self._fetch()
            return keys.get(kid)

    def kids(self) -> frozenset[str]:
        """Every kid currently trusted."""
        with self._lock:
            return frozenset(self._current())

    def reload(self) -> None:
        """Forget the cache; the next ``get`` reads the file or URL again."""
        with self._lock:
            self._keys = None
            self._file_signature = None
            self._fetched_at = None

    # -- internals (called with the lock held) ------------------------------------

    def _current(self) -> Mapping[str, TrustedKey]:
        if self._path is not None:
            return self._read_file(self._path)
        if self._keys is None or self._fetched_at is None:
            return self._fetch()
        if self._clock() - self._fetched_at >= self._ttl:
            try:
                return self._fetch()
            except InfrastructureError as exc:
                log.warning("keeping the cached JWKS: %s", exc)
        return self._keys

    def _read_file(self, path: Path) -> Mapping[str, TrustedKey]:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise InfrastructureError(
                f"JWKS file {path} is not readable ({exc.strerror}); run `ledgerflow stack up` "
                "to create dev keys or point LEDGERFLOW_JWKS at the identity provider's JWKS"
            ) from None
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if self._keys is not None and signature == self._file_signature:
            return self._keys
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InfrastructureError(f"JWKS file {path} is not readable ({exc})") from None
        self._keys = self._accept(parse_jwks(data, origin=str(path)))
        self._file_signature = signature
        return self._keys

    def _may_refetch(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._min_refetch

    def _fetch(self) -> Mapping[str, TrustedKey]:
        import httpx  # only remote sources need it

        self._fetched_at = self._clock()
        try:
            if self._http is not None:
                response = self._http.get(self.location, timeout=self._timeout)
            else:
                response = httpx.get(self.location, timeout=self._timeout)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            if self._keys is not None:
                log.warning("JWKS fetch from %s failed, keeping cached keys: %s", self.location, exc)
                return self._keys
            raise InfrastructureError(
                f"cannot fetch the JWKS from {self.location} ({exc}); check LEDGERFLOW_JWKS "
                "and that the identity provider is reachable"
            ) from None
        self._keys = self._accept(parse_jwks(response.content, origin=self.location))
        return self._keys

    def _accept(self, key_set: KeySet) -> Mapping[str, TrustedKey]:
        for reason in key_set.skipped:
            log.warning("JWKS %s: skipped %s", self.location, reason)
        return key_set.keys
