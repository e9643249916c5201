"""Bearer-token authentication for the edge (Starlette glue over ``ledgerflow.auth``).

Wire it with::

    Middleware(AuthenticationMiddleware, backend=JwtBackend(verifier), on_error=on_error)

Tokens are read from ``Authorization: Bearer <jwt>`` only. They are deliberately not
accepted from the query string (``?access_token=``), not even for SSE clients whose
``EventSource`` cannot set headers: URLs end up in access logs, proxy logs, browser
history and ``Referer`` headers, where a bearer token is as good as a password until it
expires (RFC 6750 §5.3, RFC 9700 §4.3.2). SSE clients use ``fetch()`` streaming or an
EventSource polyfill that sends headers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import anyio.to_thread
from starlette.authentication import (
    AuthCredentials,
    AuthenticationBackend,
    AuthenticationError,
    BaseUser,
)
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

from ledgerflow.api.problems import problem_for
from ledgerflow.auth.exceptions import MissingCredentials
from ledgerflow.auth.principals import Principal
from ledgerflow.auth.roles import ADMIN, AUDITOR, PRODUCER, SUBSCRIBER
from ledgerflow.auth.verifier import TokenVerifier
from ledgerflow.errors import AuthError, InfrastructureError, LedgerflowError

DEFAULT_PUBLIC_PATHS: frozenset[str] = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json"})


class PrincipalUser(BaseUser):
    """``request.user`` of an authenticated request."""

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.sub

    @property
    def identity(self) -> str:
        return self.principal.sub


class AuthRefused(AuthenticationError):
    """Carries the ledgerflow error that ``on_error`` renders as a problem."""

    def __init__(self, cause: LedgerflowError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class JwtBackend(AuthenticationBackend):
    """Verifies the bearer token of every request except those to ``public_paths``, under
    ``public_prefixes`` (the console's static files), or to no route of ``routes`` at all: an
    unknown path answers 404 whoever asks (nothing behind it to protect), not 401."""

    def __init__(
        self,
        verifier: TokenVerifier,
        *,
        public_paths: Iterable[str] = DEFAULT_PUBLIC_PATHS,
        public_prefixes: Iterable[str] = (),
        routes: Sequence[BaseRoute] = (),
        on_refused: Callable[[LedgerflowError, str | None], None] | None = None,
    ) -> None:
        self.verifier = verifier
        self.public_paths = frozenset(public_paths)
        self.public_prefixes = tuple(public_prefixes)
        self.routes = tuple(routes)
        self.on_refused = on_refused  # the identity audit's per-window counts (identity/edge.py)

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        path = _route_path(conn)
        if path in self.public_paths or path.startswith(self.public_prefixes):
            return None
        if self.routes and not any(route.matches(conn.scope)[0] != Match.NONE for route in self.routes):
            return None
        token: str | None = None
        try:
            token = bearer_token(conn)
            if self.verifier.jwks.is_remote:
                principal = await anyio.to_thread.run_sync(self.verifier.verify, token)
            else:
                principal = self.verifier.verify(token)
        except (AuthError, InfrastructureError) as exc:
            if self.on_refused is not None:
                self.on_refused(exc, token)
            raise AuthRefused(exc) from None
        return AuthCredentials(sorted(principal.roles)), PrincipalUser(principal)


def bearer_token(conn: HTTPConnection) -> str:
    """The token of ``Authorization: Bearer <token>``; ``AuthError`` if absent or malformed."""
    values = conn.headers.getlist("authorization")
    if not values:
        if "access_token" in conn.query_params:
            raise MissingCredentials(
                "tokens in the query string are refused (they leak into logs and "
                "browser history): send 'Authorization: Bearer <token>'"
            )
        raise MissingCredentials("missing bearer token: send 'Authorization: Bearer <token>'")
    if len(values) > 1:
        raise AuthError("more than one Authorization header: send exactly one")
    scheme, _, token = values[0].strip().partition(" ")
    if scheme.lower() != "bearer":
        # Never quote the header: without a scheme its first word is the credential itself.
        named = f"scheme {scheme!r}" if scheme.lower() in KNOWN_SCHEMES else "no known scheme"
        raise MissingCredentials(
            f"the Authorization header is not a bearer token ({named}): send 'Authorization: Bearer <token>'"
        )
    token = token.strip()
    if not token or " " in token:
        raise AuthError("malformed Authorization header: expected 'Bearer <token>'")
    return token


#: Schemes from the IANA HTTP Authentication Scheme Registry that a refusal may name.
KNOWN_SCHEMES: frozenset[str] = frozenset(
    {
        "basic",
        "digest",
        "dpop",
        "hoba",
        "mutual",
        "negotiate",
        "ntlm",
        "oauth",
        "scram-sha-1",
        "scram-sha-256",
        "vapid",
        "aws4-hmac-sha256",
        "token",
        "apikey",
    }
)


def on_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    """``AuthenticationMiddleware(on_error=...)``: the refusal as a problem response."""
    cause: BaseException = exc.cause if isinstance(exc, AuthRefused) else AuthError(str(exc))
    return problem_for(cause)


def principal_of(conn: HTTPConnection) -> Principal:
    """The verified caller; ``AuthError`` (401) if the request is not authenticated."""
    user = conn.scope.get("user")
    if not isinstance(user, PrincipalUser):
        raise MissingCredentials("this endpoint needs 'Authorization: Bearer <token>'")
    return user.principal


def requires_role(conn: HTTPConnection, *roles: str) -> Principal:
    """The caller, who must hold every role in ``roles`` (else 403 naming the missing one)."""
    principal = principal_of(conn)
    for role in roles:
        principal.require(role)
    return principal


def requires_any_role(conn: HTTPConnection, *roles: str) -> Principal:
    """The caller, who must hold at least one role in ``roles`` (else 403)."""
    principal = principal_of(conn)
    principal.require_any(*roles)
    return principal


ANY_TENANT_ROLE = (SUBSCRIBER, PRODUCER, ADMIN, AUDITOR)
"""Who may read the tenant's own views (the console's read endpoints): any role."""


def requires_tenant_role(conn: HTTPConnection) -> Principal:
    """The caller, holding any role of its tenant (else 403): the read endpoints' one check."""
    return requires_any_role(conn, *ANY_TENANT_ROLE)


def require_query_tenant(conn: HTTPConnection, principal: Principal) -> None:
    """Every ``tenant`` query parameter must be the token's tenant (else 403): ``?tenant=mine&tenant=
    other`` is refused too, not judged by whichever value the framework happens to keep."""
    for asked in conn.query_params.getlist("tenant"):
        principal.require_tenant(asked)


def tenant_of(conn: HTTPConnection) -> str:
    """The tenant of the caller's token (the only tenant it may reach)."""
    return principal_of(conn).tenant


def _route_path(conn: HTTPConnection) -> str:
    path: str = conn.scope.get("path", "")
    root_path: str = conn.scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    return path
