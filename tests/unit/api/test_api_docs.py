"""``GET /docs``: the built page, or a 404 problem saying how to build it (no token either way)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient

from ledgerflow.api.api_docs import PATH, api_docs


def client() -> TestClient:
    return TestClient(Starlette(routes=[Route(PATH, api_docs)]))


def test_the_built_page_is_served_as_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "api-docs").mkdir()
    (tmp_path / "api-docs" / "index.html").write_text("<title>ledgerflow API reference</title>")
    monkeypatch.setenv("LEDGERFLOW_CONSOLE_DIR", str(tmp_path))
    resp = client().get(PATH)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "ledgerflow API reference" in resp.text


def test_an_unbuilt_page_is_a_404_problem_naming_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEDGERFLOW_CONSOLE_DIR", str(tmp_path / "nothing-here"))
    resp = client().get(PATH)
    assert resp.status_code == 404 and resp.headers["content-type"] == "application/problem+json"
    assert "make console" in resp.json()["detail"]
    assert str(tmp_path) not in resp.text  # no server path in an answer that needs no token
