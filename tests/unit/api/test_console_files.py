"""``/console/`` while the console is not built: a 404 problem saying how to build it, with no
server filesystem path in it (the answer needs no token); the path goes to the log, once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.testclient import TestClient

from ledgerflow.api import console
from ledgerflow.api.console import MOUNT, ConsoleFiles


def test_an_unbuilt_console_is_a_404_without_the_servers_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "secret-layout" / "dist"
    monkeypatch.setattr(console, "_reported", set(), raising=False)
    client = TestClient(Starlette(routes=[Mount(MOUNT, app=ConsoleFiles(missing))]))
    with caplog.at_level(logging.WARNING, logger="ledgerflow.api.console"):
        answers = [client.get(f"{MOUNT}/") for _ in range(3)]
    for resp in answers:
        assert resp.status_code == 404 and resp.headers["content-type"] == "application/problem+json"
        assert "make console" in resp.json()["detail"]
        assert str(tmp_path) not in resp.text and "secret-layout" not in resp.text
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 1 and str(missing / "index.html") in logged[0]
