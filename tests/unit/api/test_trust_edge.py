"""Issue 18 at the edge, pure parts: closed metric labels (case 4), cursors beyond the
log end (case 5), refusals that never quote the credential (case 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ledgerflow import metrics
from ledgerflow.api import cursors
from ledgerflow.api.authentication import JwtBackend, on_error
from ledgerflow.api.hub import Hub
from ledgerflow.api.problems import exception_handlers
from ledgerflow.auth.devkeys import ensure_dev_keys
from ledgerflow.auth.jwks import JwksSource
from ledgerflow.auth.tokens import mint_token
from ledgerflow.auth.verifier import TokenVerifier
from ledgerflow.config import Settings


# -- case 4: labels from closed sets ---------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_known_methods_are_their_own_label(method: str) -> None:
    assert metrics.method_label(method) == method


@pytest.mark.parametrize("method", ["X00000", "get", "PROPFIND", "G" * 5000, "GET\r\n", ""])
def test_every_other_method_is_other(method: str) -> None:
    assert metrics.method_label(method) == "other"


@pytest.mark.parametrize(
    ("status", "label"),
    [
        (200, "200"),
        (401, "401"),
        (503, "503"),
        (299, "2xx"),
        (418, "4xx"),
        (599, "5xx"),
        (99, "other"),
        (600, "other"),
    ],
)
def test_statuses_are_listed_codes_classes_or_other(status: int, label: str) -> None:
    assert metrics.status_label(status) == label


def test_unmatched_requests_never_carry_their_path() -> None:
    assert metrics.route_label(None) == "unmatched"
    assert metrics.route_label("/v1/conversations/{conversation_id}") == "/v1/conversations/{conversation_id}"


def test_route_templates_beyond_the_limit_fold_into_other(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "_routes", set())
    labels = {metrics.route_label(f"/r{i}") for i in range(metrics.MAX_ROUTE_LABELS + 50)}
    assert len(labels) == metrics.MAX_ROUTE_LABELS + 1 and "other" in labels
    assert metrics.route_label("/r0") == "/r0"  # a template once labelled keeps its label


def _series(registry: CollectorRegistry) -> int:
    return sum(
        1 for line in generate_latest(registry).decode().splitlines() if line and not line.startswith("#")
    )


def test_a_flood_of_unknown_methods_statuses_and_paths_adds_no_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = CollectorRegistry()
    counter = Counter("t_requests_total", "t", ["route", "method", "status"], registry=registry)

    def observe(template: str | None, method: str, status: int) -> None:
        counter.labels(
            metrics.route_label(template), metrics.method_label(method), metrics.status_label(status)
        ).inc()

    def flood(start: int, stop: int) -> None:
        for i in range(start, stop):
            observe(None, f"X{i:05d}", 400 + i % 200)
            observe(f"/healthz{'/' * (i % 2)}", f"M{i}", 405)

    flood(0, 200)  # every status of the flood once
    before = _series(registry)
    flood(200, 2200)
    assert _series(registry) == before < 200


# -- case 5: cursor beyond the log end ---------------------------------------------------------
KEYS = [("d", 3), ("e", 3)]


def test_a_cursor_within_the_log_is_kept() -> None:
    resume = cursors.resume_from("d3:7.e3:12", KEYS)
    assert cursors.check_log_end(resume, {("d", 3): 8, ("e", 3): 13}) == resume


def test_a_cursor_past_the_log_end_restarts_live_with_a_reason() -> None:
    resume = cursors.resume_from("d3:7.e3:1000", KEYS)
    checked = cursors.check_log_end(resume, {("d", 3): 8, ("e", 3): 41})
    assert (checked.seen, checked.restart) == (None, "live")
    assert checked.reset is not None and checked.reset.startswith("cursor beyond the log end on e3")
    assert "served up to 1000" in checked.reset and "below 41" in checked.reset


def test_a_cursor_one_past_the_last_record_is_beyond_the_end() -> None:
    resume = cursors.resume_from("d3:-1.e3:5", KEYS)  # e3 holds offsets 0..4
    assert cursors.check_log_end(resume, {("e", 3): 5}).reset is not None
    assert cursors.check_log_end(resume, {("e", 3): 6}).reset is None


def test_only_partitions_past_this_edges_read_position_need_the_broker() -> None:
    resume = cursors.resume_from("d3:7.e3:12", KEYS)
    assert cursors.ahead_of(resume, {("d", 3): 7, ("e", 3): 20}) == []
    assert cursors.ahead_of(resume, {("d", 3): 2, ("e", 3): 20}) == [("d", 3)]
    assert cursors.ahead_of(cursors.resume_from("", KEYS), {}) == []


def test_a_stream_resuming_ahead_of_this_hub_gets_live_frames_only_after_its_cursor() -> None:
    hub = Hub(Settings())
    hub.partitions = {"policy.decisions": 6, "conversation.events": 6}
    hub._positions = {(c, p): 10 for c in ("d", "e") for p in range(6)}  # the hub read up to 9
    sub, gaps = hub.subscribe(
        "acme", None, {(c, p): 14 if p == 3 else 4 for c in ("d", "e") for p in range(6)}
    )
    assert sub.start[("e", 3)] == 15 and sub.start[("e", 0)] == 10  # nothing at or below 14 again
    assert gaps[("e", 0)] == (5, 10) and ("e", 3) not in gaps


# -- case 5: a refusal never quotes the credential ------------------------------------------------
async def _me(request: Request) -> JSONResponse:
    return JSONResponse({"sub": request.user.display_name})


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestClient, str]:
    keys = ensure_dev_keys(Path(tmp_path_factory.mktemp("keys")))
    verifier = TokenVerifier(JwksSource(keys.jwks_path), issuer="ledgerflow-dev", audience="ledgerflow")
    app = Starlette(
        routes=[Route("/v1/me", _me)],
        middleware=[Middleware(AuthenticationMiddleware, backend=JwtBackend(verifier), on_error=on_error)],
        exception_handlers=exception_handlers(),
    )
    return TestClient(app), mint_token(keys, sub="alice", tenant="acme", roles="subscriber")


@pytest.mark.parametrize("header", ["{token}", "{token} trailing", "Token {token}", "JWT {token}"])
def test_a_token_without_the_bearer_scheme_is_refused_without_quoting_it(client, header: str) -> None:
    http, token = client
    response = http.get("/v1/me", headers={"Authorization": header.format(token=token)})
    assert response.status_code == 401
    assert token[:20] not in response.text and token[:20] not in str(response.headers)
    assert "Bearer <token>" in response.json()["detail"]


def test_bearer_with_a_three_part_non_jwt_gets_a_clear_401(client) -> None:
    http, _ = client
    response = http.get("/v1/me", headers={"Authorization": "Bearer abc.def.ghi"})
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert "not a JWT" in detail and "codec" not in detail and "abc.def.ghi" not in response.text
