"""A path that differs from a route only by a trailing slash is an unknown path: a 404 problem
like any other (docs/api.md), not a redirect. Before, Starlette's router answered it with a 307
whose ``Location`` it built from the request's ``Host`` header (``Host: evil.example`` → ``Location:
http://evil.example/v1/events``: whatever host a client or a shared cache was told), an empty
body, not a problem; ``POST /v1/events/`` asked the client to send its body (and token) there.
``/console`` still leads to the console, by a relative 307 as ``/`` does. No lifespan runs: these
answers need neither Kafka nor Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.testclient import TestClient

from ledgerflow.api.app import create_app
from ledgerflow.api.problems import NO_ROUTE
from ledgerflow.config import Settings

HOSTILE_HOST = {"Host": "evil.example"}


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    return TestClient(create_app(Settings(state_dir=tmp_path / "state")), base_url="http://edge.test")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/healthz/"),
        ("GET", "/v1/policy/packs/"),
        ("POST", "/v1/events/"),
        ("GET", "/registry/subjects/"),
    ],
)
def test_a_route_with_a_trailing_slash_is_a_404_problem(client: TestClient, method: str, path: str) -> None:
    resp = client.request(method, path, headers=HOSTILE_HOST, follow_redirects=False)
    assert resp.status_code == 404, (resp.status_code, resp.headers)
    assert resp.headers["content-type"] == "application/problem+json"
    assert resp.json()["detail"] == NO_ROUTE and "location" not in resp.headers


@pytest.mark.parametrize("path", ["/", "/console"])
def test_the_console_is_reached_by_a_relative_redirect(client: TestClient, path: str) -> None:
    resp = client.get(path, headers=HOSTILE_HOST, follow_redirects=False)
    assert resp.status_code == 307 and resp.headers["location"] == "/console/"
