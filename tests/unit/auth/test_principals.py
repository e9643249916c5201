from __future__ import annotations

import pytest

from ledgerflow.auth.principals import Principal
from ledgerflow.auth.roles import ROLES, parse_roles
from ledgerflow.errors import AuthError, ValidationError

ALICE = Principal(sub="alice", tenant="acme", roles=frozenset({"subscriber"}), expires_at=0.0, kid="k")


def test_require_passes_for_a_held_role() -> None:
    ALICE.require("subscriber")


def test_require_missing_role_is_403_naming_the_role() -> None:
    with pytest.raises(AuthError) as info:
        ALICE.require("admin")
    assert info.value.status == 403
    assert "role 'admin' required" in info.value.detail
    assert "[subscriber]" in info.value.detail


def test_require_any_passes_with_one_of_the_roles() -> None:
    ALICE.require_any("admin", "subscriber")


def test_require_any_without_any_is_403() -> None:
    with pytest.raises(AuthError) as info:
        ALICE.require_any("admin", "auditor")
    assert info.value.status == 403


def test_tenant_isolation() -> None:
    assert ALICE.can_read_tenant("acme")
    assert not ALICE.can_read_tenant("globex")
    assert not ALICE.can_read_tenant("ACME")
    with pytest.raises(AuthError) as info:
        ALICE.require_tenant("globex")
    assert info.value.status == 403


def test_a_refused_tenant_is_quoted_and_cut_so_the_refusal_stays_one_line() -> None:
    """The asked tenant is a query parameter: ``?tenant=acme%0aFAKE`` was written raw into the detail."""
    for asked in ("globex\nFAKE: granted", "x" * 5000):
        with pytest.raises(AuthError) as info:
            ALICE.require_tenant(asked)
        assert "\n" not in info.value.detail and len(info.value.detail) < 160, info.value.detail
    with pytest.raises(AuthError, match="not 'globex': a token only reaches"):
        ALICE.require_tenant("globex")


def test_principal_is_immutable() -> None:
    with pytest.raises(AttributeError):
        ALICE.tenant = "globex"  # type: ignore[misc]


def test_parse_roles_accepts_csv_and_iterables() -> None:
    assert parse_roles("subscriber,producer") == {"subscriber", "producer"}
    assert parse_roles(["admin"]) == {"admin"}
    assert parse_roles(" ,auditor, ") == {"auditor"}
    assert parse_roles(sorted(ROLES)) == ROLES


def test_parse_roles_names_unknown_roles_and_the_known_ones() -> None:
    with pytest.raises(ValidationError, match="unknown role\\(s\\) god, root; known roles: admin"):
        parse_roles("root,subscriber,god")


def test_parse_roles_refuses_non_strings() -> None:
    with pytest.raises(ValidationError):
        parse_roles([1])  # type: ignore[list-item]
