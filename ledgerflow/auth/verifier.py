"""Verify a bearer JWT against the trusted JWKS and turn it into a Principal.

1. Read the header without trusting it: only RS256, ES256 and EdDSA; ``kid`` required.
2. Find the kid in the JWKS (unknown: another deployment's key, or one rotated away).
3. Refuse a key whose type/curve does not fit the alg (algorithm confusion).
4. Verify the signature with that key and that one algorithm.
5. Check the claims (``iss``, ``aud``, ``exp``, ``nbf``, lifetime, ``sub``, ``tenant``, ``roles``).

No refusal quotes the token or PyJWT's decoding errors (which describe its bytes): a
detail names the part that is wrong and what to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
from jwt.exceptions import DecodeError, InvalidSignatureError, PyJWTError

from ledgerflow.auth.claims import principal_from_claims
from ledgerflow.auth.jwk import ACCEPTED_ALGORITHMS, key_mismatch
from ledgerflow.auth.jwks import JwksSource
from ledgerflow.auth.lifetime import max_token_ttl
from ledgerflow.auth.principals import Principal
from ledgerflow.errors import AuthError

__all__ = ["MAX_TOKEN_BYTES", "JwksSource", "TokenVerifier"]

#: Tokens longer than this are refused before any parsing.
MAX_TOKEN_BYTES = 8192

_ACCEPTED = ", ".join(ACCEPTED_ALGORITHMS)
_SIGNATURE_ONLY = {
    "verify_signature": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
    "verify_sub": False,
    "verify_jti": False,
}


class TokenVerifier:
    """Checks bearer tokens; every refusal is ``AuthError`` (401) with an operator hint."""

    def __init__(
        self,
        jwks: JwksSource,
        *,
        issuer: str,
        audience: str,
        leeway: float = 30.0,
        clock: Callable[[], float] = time.time,
        max_lifetime: float | None = None,
    ) -> None:
        """``max_lifetime`` in seconds; None reads ``LEDGERFLOW_MAX_TOKEN_TTL`` (default 24 h)."""
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.max_lifetime = max_token_ttl() if max_lifetime is None else max_lifetime
        self._clock = clock

    def verify(self, token: str) -> Principal:
        """Return the Principal of a valid token; raise ``AuthError`` otherwise."""
        if not isinstance(token, str) or not token:
            raise AuthError("empty bearer token")
        if len(token) > MAX_TOKEN_BYTES:
            raise AuthError(f"bearer token longer than {MAX_TOKEN_BYTES} bytes is refused")
        if token.count(".") != 2:
            raise AuthError(
                "bearer token is not a signed JWT (expected header.payload.signature; "
                "encrypted JWE tokens are not supported)"
            )
        # Step 1.
        try:
            header = jwt.get_unverified_header(token)
        except DecodeError:
            raise AuthError(
                "bearer token is not a JWT: its header is not base64url-encoded JSON "
                "(send the token exactly as the issuer gave it)"
            ) from None
        except PyJWTError:  # a well-formed header PyJWT refuses: a 'kid' or 'crit' it cannot take
            raise AuthError(
                "token header is refused: its 'kid' must be a string and its 'crit' may name no "
                "extension (this edge supports none)"
            ) from None
        alg = header.get("alg")
        if not isinstance(alg, str):
            raise AuthError(f"token header 'alg' (the algorithm) must be a string: one of {_ACCEPTED}")
        if alg.lower() == "none":
            raise AuthError(f"unsigned tokens (alg {_short(alg)}) are refused: sign with one of {_ACCEPTED}")
        if alg.upper().startswith("HS"):
            raise AuthError(
                f"symmetric algorithm {alg[:20]} is refused: ledgerflow accepts only {_ACCEPTED} "
                "with keys from its JWKS"
            )
        if alg not in ACCEPTED_ALGORITHMS:
            raise AuthError(f"algorithm {_short(alg)} is not accepted (accepted: {_ACCEPTED})")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("token header has no 'kid': the edge needs it to pick the key")
        # Step 2.
        trusted = self.jwks.get(kid)
        if trusted is None:
            raise AuthError(
                f"unknown key id {_short(kid)}: this edge does not trust the key that signed the token "
                "(a token of another deployment, or of a key rotated out): get a new token from this "
                "deployment's issuer"
            )
        # Step 3.
        mismatch = key_mismatch(trusted.jwk, alg)
        if mismatch is not None:
            raise AuthError(f"token alg {alg} does not fit key {_short(kid)}: {mismatch}")
        # Step 4.
        try:
            claims = jwt.decode(
                token,
                trusted.key,
                algorithms=[alg],
                options=_SIGNATURE_ONLY,  # type: ignore[arg-type]
            )
        except InvalidSignatureError:
            raise AuthError(
                f"token signature does not verify with key {_short(kid)}: the token was altered "
                "or signed by someone else"
            ) from None
        except PyJWTError:
            raise AuthError(
                "bearer token is not a JWT: its payload or signature is not base64url-encoded "
                "(claims must be a JSON object)"
            ) from None
        # Step 5.
        return principal_from_claims(
            claims,
            kid=kid,
            issuer=self.issuer,
            audience=self.audience,
            now=self._clock(),
            leeway=self.leeway,
            max_lifetime=self.max_lifetime,
        )


def _short(value: str) -> str:
    return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
