"""Bearer authentication through a pure Starlette app with real keys (no Kafka or Redis)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ledgerflow.api.authentication import (
    DEFAULT_PUBLIC_PATHS,
    JwtBackend,
    on_error,
    require_query_tenant,
    requires_any_role,
    requires_role,
    tenant_of,
)
from ledgerflow.api.problems import PROBLEM_JSON, exception_handlers
from ledgerflow.auth.devkeys import DevKeys, ensure_dev_keys
from ledgerflow.auth.jwks import JwksSource
from ledgerflow.auth.tokens import mint_token
from ledgerflow.auth.verifier import TokenVerifier


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def me(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "sub": request.user.display_name,
            "tenant": tenant_of(request),
            "scopes": request.auth.scopes,
        }
    )


async def admin_only(request: Request) -> JSONResponse:
    return JSONResponse({"sub": requires_role(request, "admin").sub})


async def readers(request: Request) -> JSONResponse:
    return JSONResponse({"sub": requires_any_role(request, "subscriber", "auditor").sub})


async def tenant_view(request: Request) -> JSONResponse:
    principal = requires_role(request, "subscriber")
    require_query_tenant(request, principal)
    return JSONResponse({"tenant": principal.tenant})


async def public_whoami(request: Request) -> JSONResponse:
    return JSONResponse({"tenant": tenant_of(request)})


def make_client(jwks_path: Path, *, public_paths=DEFAULT_PUBLIC_PATHS) -> TestClient:
    verifier = TokenVerifier(JwksSource(jwks_path), issuer="ledgerflow-dev", audience="ledgerflow")
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/v1/me", me),
            Route("/v1/admin", admin_only),
            Route("/v1/read", readers),
            Route("/v1/tenant-view", tenant_view),
            Route("/open/whoami", public_whoami),
        ],
        middleware=[
            Middleware(
                AuthenticationMiddleware,
                backend=JwtBackend(verifier, public_paths=public_paths),
                on_error=on_error,
            )
        ],
        exception_handlers=exception_handlers(),
    )
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> DevKeys:
    return ensure_dev_keys(tmp_path_factory.mktemp("edge"), alg="EdDSA")


@pytest.fixture(scope="module")
def client(keys: DevKeys) -> TestClient:
    return make_client(keys.jwks_path)


def bearer(keys: DevKeys, roles: str = "subscriber", **kwargs) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(keys, sub='alice', tenant='acme', roles=roles, **kwargs)}"}


def test_valid_token_reaches_the_endpoint_with_principal_and_scopes(client, keys) -> None:
    response = client.get("/v1/me", headers=bearer(keys, "subscriber,producer"))
    assert response.status_code == 200
    assert response.json() == {"sub": "alice", "tenant": "acme", "scopes": ["producer", "subscriber"]}


def test_missing_token_is_a_401_problem_with_a_bearer_challenge(client) -> None:
    response = client.get("/v1/me")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON
    assert response.headers["www-authenticate"] == 'Bearer realm="ledgerflow"'
    assert "Authorization: Bearer" in response.json()["detail"]


def test_public_paths_need_no_token(client) -> None:
    assert client.get("/healthz").status_code == 200


def test_public_paths_ignore_a_broken_token(client) -> None:
    assert client.get("/healthz", headers={"Authorization": "Bearer garbage"}).status_code == 200


def test_unknown_path_without_token_is_401_not_404(client) -> None:
    assert client.get("/v1/nothing-here").status_code == 401


def test_public_paths_are_configurable(keys) -> None:
    custom = make_client(keys.jwks_path, public_paths={"/open/whoami"})
    assert custom.get("/healthz").status_code == 401
    # A public endpoint that still asks for the caller gets a 401 problem, not a crash.
    response = custom.get("/open/whoami")
    assert response.status_code == 401
    assert response.headers["content-type"] == PROBLEM_JSON


def test_expired_token_is_401_invalid_token(client, keys) -> None:
    response = client.get("/v1/me", headers=bearer(keys, now=time.time() - 7200))
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_token_in_query_string_is_refused_with_the_reason(client, keys) -> None:
    token = bearer(keys)["Authorization"].removeprefix("Bearer ")
    response = client.get(f"/v1/me?access_token={token}")
    assert response.status_code == 401
    assert "query string are refused" in response.json()["detail"]


def test_other_schemes_are_refused(client) -> None:
    response = client.get("/v1/me", headers={"Authorization": "Basic YWxpY2U6c2VjcmV0"})
    assert response.status_code == 401
    assert "'Basic'" in response.json()["detail"]


def test_bearer_scheme_is_case_insensitive(client, keys) -> None:
    header = bearer(keys)["Authorization"].replace("Bearer", "bearer")
    assert client.get("/v1/me", headers={"Authorization": header}).status_code == 200


def test_missing_role_is_a_403_problem_naming_the_role(client, keys) -> None:
    response = client.get("/v1/admin", headers=bearer(keys, "subscriber"))
    assert response.status_code == 403
    assert response.headers["content-type"] == PROBLEM_JSON
    assert "role 'admin' required" in response.json()["detail"]
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_held_role_passes(client, keys) -> None:
    assert client.get("/v1/admin", headers=bearer(keys, "admin")).json() == {"sub": "alice"}


def test_any_of_roles(client, keys) -> None:
    assert client.get("/v1/read", headers=bearer(keys, "auditor")).status_code == 200
    assert client.get("/v1/read", headers=bearer(keys, "producer")).status_code == 403


def test_missing_jwks_is_a_503_problem_not_a_401(tmp_path: Path, keys) -> None:
    response = make_client(tmp_path / "gone.json").get("/v1/me", headers=bearer(keys))
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.headers["content-type"] == PROBLEM_JSON


@pytest.mark.parametrize(
    ("query", "status"),
    [
        ("", 200),
        ("?tenant=acme", 200),
        ("?tenant=acme&tenant=acme", 200),
        ("?tenant=globex", 403),
        ("?tenant=acme&tenant=globex", 403),
        ("?tenant=globex&tenant=acme", 403),  # Starlette's .get() keeps the last value: this was a 200
        ("?tenant=", 403),
    ],
)
def test_every_tenant_query_parameter_must_be_the_tokens(client, keys, query: str, status: int) -> None:
    response = client.get(f"/v1/tenant-view{query}", headers=bearer(keys))
    assert response.status_code == status, response.text
