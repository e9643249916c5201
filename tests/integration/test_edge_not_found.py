"""Unknown paths answer 404 problem+json whoever asks; auth is checked only on routes that exist;
a token of another deployment is told so (a real edge process)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from ledgerflow.auth.devkeys import ensure_dev_keys
from ledgerflow.auth.tokens import mint_token

PROBLEM = "application/problem+json"
NO_ROUTE = "no operation at this path: the operations are listed at /openapi.json"


@pytest.mark.parametrize("path", ["/nope", "/v1/nope", "/v1/conversations/c1/extra", "/v2/conversations"])
def test_unknown_path_is_a_404_problem_without_a_token(edge: str, path: str) -> None:
    resp = httpx.get(edge + path, timeout=5)
    assert resp.status_code == 404, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    assert resp.json()["detail"] == NO_ROUTE
    assert "www-authenticate" not in resp.headers


def test_unknown_path_is_404_with_a_bad_token_too(edge: str) -> None:
    resp = httpx.get(edge + "/nope", headers={"Authorization": "Bearer abc.def.ghi"}, timeout=5)
    assert resp.status_code == 404


def test_a_route_that_exists_still_needs_a_token(edge: str) -> None:
    resp = httpx.get(edge + "/v1/conversations", timeout=5)
    assert resp.status_code == 401
    assert resp.headers["content-type"].startswith(PROBLEM)


def test_root_redirects_to_the_console(edge: str) -> None:
    resp = httpx.get(edge + "/", timeout=5)
    assert resp.status_code == 307 and resp.headers["location"].endswith("/console/")


def test_a_token_of_another_deployment_is_named_as_such(edge: str, tmp_path: Path) -> None:
    other = ensure_dev_keys(tmp_path / "other-deployment")
    token = mint_token(
        other, sub="x", tenant="acme", roles=["subscriber"], issuer="ledgerflow-dev", audience="ledgerflow"
    )
    resp = httpx.get(edge + "/v1/conversations", headers={"Authorization": f"Bearer {token}"}, timeout=5)
    assert resp.status_code == 401
    detail = resp.json()["detail"]
    assert "this edge does not trust the key that signed the token" in detail
    assert "a token of another deployment" in detail and "keys may have rotated" not in detail
    assert token not in detail and token not in resp.headers.get("www-authenticate", "")
