"""Who is calling: the verified content of a bearer token."""

from __future__ import annotations

from dataclasses import dataclass

from ledgerflow.errors import AuthError


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller. Built only by ``TokenVerifier.verify`` (or tests)."""

    sub: str
    tenant: str
    roles: frozenset[str]
    expires_at: float
    kid: str
    token_id: str | None = None

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def require(self, role: str) -> None:
        """Raise ``AuthError(status=403)`` unless the token carries ``role``."""
        if role not in self.roles:
            raise AuthError(
                f"role '{role}' required; the token of '{self.sub}' (tenant "
                f"'{self.tenant}') has roles [{', '.join(sorted(self.roles))}]: "
                f"ask for a token that includes '{role}'",
                status=403,
            )

    def require_any(self, *roles: str) -> None:
        """Raise ``AuthError(status=403)`` unless the token carries one of ``roles``."""
        if not roles or self.roles.isdisjoint(roles):
            raise AuthError(
                f"one of the roles [{', '.join(roles)}] required; the token of "
                f"'{self.sub}' (tenant '{self.tenant}') has roles "
                f"[{', '.join(sorted(self.roles))}]: ask for a token with one of them",
                status=403,
            )

    def can_read_tenant(self, tenant: str) -> bool:
        """A token never reaches another tenant's data, whatever its roles."""
        return tenant == self.tenant

    def require_tenant(self, tenant: str) -> None:
        """Raise ``AuthError(status=403)`` if ``tenant`` is not the token's tenant."""
        if not self.can_read_tenant(tenant):
            # The asked tenant is the caller's text (a query parameter): quoted, cut, one line.
            asked = repr(tenant) if len(tenant) <= 40 else repr(tenant[:37] + "...")
            raise AuthError(
                f"the token is for tenant '{self.tenant}', not {asked}: "
                "a token only reaches its own tenant's data",
                status=403,
            )
