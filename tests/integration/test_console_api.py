"""The console's read APIs against a real edge, worker, Kafka and Redis.

One worker (usage windows of 1 s so windows close while the module runs) and one edge for
the module, on their own topics; the tenants ``acme`` and ``globex`` share them, so every
test also checks that one tenant never sees the other's data. The Redis-down case runs an
edge on a private Redis of its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledgerflow.config import Settings
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import read_pid_file
from ledgerflow.stack.processes import stop as stop_process
from tests.integration import edgekit
from tests.support.processes import free_port, start, wait_http_ready

OUTCOMES = {"allow", "redact", "review", "deny"}
PACK = {
    "description": "console test",
    "rules": [{"id": "secrets", "when": {"keywords": ["password"]}, "action": "deny", "weight": 10}],
}

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


@pytest.fixture(scope="module")
def target(stack: Settings) -> Iterator[tuple[Settings, str]]:
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings))
    log_dir = stack.state_dir / "test-logs" / "test_console_api"
    http = f"127.0.0.1:{free_port()}"
    env = {"LEDGERFLOW_USAGE_WINDOW_S": "1", "LEDGERFLOW_USAGE_LATENESS_S": "0.5"}
    worker = start(settings, "worker", "worker", log_dir=log_dir, extra_env=env)
    edge = start(settings.with_overrides(http=http), "edge", "serve", log_dir=log_dir)
    try:
        wait_http_ready(edge, f"http://{http}")
        yield settings, f"http://{http}"
    finally:
        edge.stop()
        worker.stop()


@pytest.fixture(scope="module")
def conversations(target: tuple[Settings, str], tokens_m: Callable[..., str]) -> dict[str, list[str]]:
    """Five conversations of acme and two of globex, one decided turn each."""
    _, base = target
    made: dict[str, list[str]] = {"acme": [], "globex": []}
    for tenant, count in (("acme", 5), ("globex", 2)):
        token = tokens_m(tenant, "producer")
        for i in range(count):
            conv = f"{tenant}-c{i}-{uuid.uuid4().hex[:6]}"
            card = " my card is 4111 1111 1111 1111" if i == 0 else ""
            resp = httpx.post(
                f"{base}/v1/conversation/step",
                json={"conversation_id": conv, "content": f"hello {i}{card}", "model": f"slm-{tenant}"},
                headers=_auth(token),
                params={"wait": 20},
                timeout=30,
            )
            assert resp.status_code == 200, resp.text
            made[tenant].append(conv)
            time.sleep(0.01)  # distinct activity times, newest last
    return made


@pytest.fixture(scope="module")
def tokens_m(stack: Settings) -> Callable[..., str]:
    def make(tenant: str = "acme", roles: str = "subscriber") -> str:
        return edgekit.token(stack, "console-test", tenant, roles)

    return make


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _get(base: str, path: str, token: str, **params: Any) -> httpx.Response:
    return httpx.get(f"{base}{path}", headers=_auth(token), params=params, timeout=30)


def _eventually(probe: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = probe()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(0.3)


def _all_pages(base: str, token: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(50):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        resp = _get(base, "/v1/conversations", token, **params)
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert len(body["items"]) <= limit
        items += body["items"]
        cursor = body["next"]
        if cursor is None:
            return items
    raise AssertionError("paging never ended")


def test_conversation_list_pages_newest_first_and_shows_only_the_tenants_own(
    target: tuple[Settings, str], conversations: dict[str, list[str]], tokens_m: Callable[..., str]
) -> None:
    _, base = target
    reader = tokens_m("acme", "subscriber")

    def decided() -> list[dict[str, Any]] | None:
        items = _all_pages(base, reader, 2)
        return items if len(items) == 5 and all(i["decisions"] == 1 for i in items) else None

    items = _eventually(decided, "acme's five conversations with their decisions in the list")
    assert [i["conversation_id"] for i in items] == conversations["acme"][::-1]  # newest activity first
    assert [i["last_activity"] for i in items] == sorted((i["last_activity"] for i in items), reverse=True)
    assert all(i["turns"] == 1 and i["last_outcome"] in OUTCOMES for i in items)
    assert items[0]["last_activity"].endswith("Z") and "T" in items[0]["last_activity"]
    one_page = _get(base, "/v1/conversations", reader).json()
    assert one_page["next"] is None and one_page["items"] == items
    theirs = _all_pages(base, tokens_m("globex", "subscriber"), 50)
    assert {i["conversation_id"] for i in theirs} == set(conversations["globex"])
    # Another tenant's conversation, asked for by id, is a 404 like a missing one.
    assert _get(base, f"/v1/conversations/{conversations['globex'][0]}", reader).status_code == 404


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "201"},
        {"limit": "ten"},
        {"limit": "-1"},
        {"cursor": "not-a-cursor!"},
        {"cursor": "Zm9v"},
    ],
)
def test_bad_limit_or_cursor_is_a_422_problem(
    target: tuple[Settings, str], tokens_m: Callable[..., str], params: dict[str, str]
) -> None:
    _, base = target
    resp = _get(base, "/v1/conversations", tokens_m(), **params)
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert next(iter(params)) in resp.json()["detail"]


def test_another_tenant_in_the_query_is_refused(
    target: tuple[Settings, str], tokens_m: Callable[..., str]
) -> None:
    _, base = target
    assert _get(base, "/v1/conversations", tokens_m("acme"), tenant="globex").status_code == 403
    assert httpx.get(f"{base}/v1/conversations", timeout=10).status_code == 401


def test_overview_counts_the_tenants_turns_and_reports_health_and_lag(
    target: tuple[Settings, str], conversations: dict[str, list[str]], tokens_m: Callable[..., str]
) -> None:
    settings, base = target
    token = tokens_m("acme", "subscriber")

    def counted() -> dict[str, Any] | None:
        body = _get(base, "/v1/overview", token).json()
        decided = sum(body["counters"]["decisions"].values())
        return body if body["counters"]["turns"] == 5 and decided == 5 and body["lag"] else None

    body = _eventually(counted, "acme's counters (5 turns, 5 decisions) and the worker's lag")
    assert body["health"]["kafka"] == "ok" and body["health"]["redis"] == "ok"
    assert body["health"]["worker"] in ("ok", "unknown")
    assert set(body["counters"]["decisions"]) == OUTCOMES
    assert body["counters"]["dead_letters"] == 0
    assert all(row["group"] == settings.topic_prefix + "ledgerflow-worker" for row in body["lag"])
    assert all(row["topic"].startswith(settings.topic_prefix) for row in body["lag"])
    assert all(row["lag"] == max(row["end"] - row["committed"], 0) for row in body["lag"])
    assert body["at"].endswith("Z")
    globex = _get(base, "/v1/overview", tokens_m("globex")).json()
    assert globex["counters"]["turns"] == 2  # globex's own, not acme's


def test_rule_packs_list_get_and_validate_per_tenant(
    target: tuple[Settings, str], tokens_m: Callable[..., str]
) -> None:
    _, base = target
    admin, reader = tokens_m("acme", "admin"), tokens_m("acme", "subscriber")
    published = []
    for n in (1, 2):
        resp = httpx.put(
            f"{base}/v1/policy/rules", json={**PACK, "description": f"v{n}"}, headers=_auth(admin), timeout=30
        )
        assert resp.status_code == 201, resp.text
        published.append(resp.json())
    other = httpx.put(
        f"{base}/v1/policy/rules", json=PACK, headers=_auth(tokens_m("globex", "admin")), timeout=30
    )
    assert other.status_code == 201, other.text

    listed = _get(base, "/v1/policy/packs", reader).json()["items"]
    assert [p["version"] for p in listed] == [2, 1]
    assert [p["constitution_hash"] for p in listed] == [p["constitution_hash"] for p in published[::-1]]
    assert all(p["published_by"] == "edge:console-test" and p["rules"] == 1 for p in listed)
    one = _get(base, "/v1/policy/packs/1", reader).json()
    assert one["pack"]["description"] == "v1" and one["pack"]["tenant"] == "acme"
    assert _get(base, "/v1/policy/packs/9", reader).status_code == 404
    assert _get(base, "/v1/policy/packs/one", reader).status_code == 422
    assert [p["version"] for p in _get(base, "/v1/policy/packs", tokens_m("globex")).json()["items"]] == [1]

    valid = httpx.post(
        f"{base}/v1/policy/validate", json={**PACK, "description": "v2"}, headers=_auth(reader), timeout=10
    )
    assert valid.status_code == 200, valid.text
    assert valid.json() == {"valid": True, "constitution_hash": published[1]["constitution_hash"]}
    bad = {**PACK, "rules": [{"id": "broken", "when": {"patterns": ["("]}, "action": "deny", "weight": 1}]}
    invalid = httpx.post(f"{base}/v1/policy/validate", json=bad, headers=_auth(admin), timeout=10)
    assert invalid.status_code == 422 and invalid.headers["content-type"] == "application/problem+json"
    assert [e["rule"] for e in invalid.json()["errors"]] == ["broken"]
    assert len(_get(base, "/v1/policy/packs", reader).json()["items"]) == 2  # validation published nothing
    foreign = httpx.post(
        f"{base}/v1/policy/validate", json={**PACK, "tenant": "globex"}, headers=_auth(admin), timeout=10
    )
    assert foreign.status_code == 403
    # 500 levels deep (orjson parses up to 1,024): it was a RecursionError in the pack loader, a 500.
    body = json.dumps({**PACK, "description": "deep"}).replace('"deep"', "[" * 500 + "1" + "]" * 500)
    deep = httpx.post(
        f"{base}/v1/policy/validate",
        content=body,
        headers={**_auth(admin), "content-type": "application/json"},
        timeout=10,
    )
    assert deep.status_code == 422, deep.text
    assert "nests deeper than 64 levels" in deep.json()["detail"]


def test_training_history_is_newest_first_chained_and_per_tenant(
    target: tuple[Settings, str], tokens_m: Callable[..., str]
) -> None:
    _, base = target
    admin = tokens_m("acme", "admin")
    answers = []
    for path, body in (("enable", {"reason": "label", "ttl_seconds": 600}), ("disable", {"reason": "done"})):
        resp = httpx.post(
            f"{base}/v1/training/{path}", json=body, headers=_auth(admin), params={"wait": 20}, timeout=30
        )
        assert resp.status_code == 200, resp.text
        answers.append(resp.json())
    # One time format on every JSON surface: RFC 3339 with microseconds, not integer µs.
    assert RFC3339.fullmatch(answers[0]["expires_at"]) and answers[1]["expires_at"] is None
    items = _get(base, "/v1/training/history", tokens_m("acme", "subscriber")).json()["items"]
    assert [i["type"] for i in items] == ["TrainingDisabled", "TrainingEnabled"]
    assert [i["sequence"] for i in items] == [2, 1]
    assert [i["mode"] for i in items] == ["disabled", "enabled"]
    assert all(i["chain"] == "ok" for i in items)
    assert items[0]["prev_hash"] == items[1]["hash"]
    assert items[1]["expires_at"] == answers[0]["expires_at"] and items[0]["expires_at"] is None
    assert _get(base, "/v1/training/history", admin, limit=1).json()["items"] == items[:1]
    assert _get(base, "/v1/training/history", tokens_m("globex")).json()["items"] == []
    assert _get(base, "/v1/training/history", admin, limit="0").status_code == 422


def test_usage_lists_the_tenants_models_and_windows_only(
    target: tuple[Settings, str], conversations: dict[str, list[str]], tokens_m: Callable[..., str]
) -> None:
    _, base = target

    def windows() -> dict[str, Any] | None:
        body = _get(base, "/v1/usage", tokens_m("acme")).json()
        return body if sum(w["turns"] for w in body["windows"]) >= 5 else None

    body = _eventually(windows, "acme's usage windows", timeout=60)
    assert body["models"] == ["slm-acme"]
    assert all(w["model"] == "slm-acme" and w["tokens"] > 0 for w in body["windows"])
    assert all(w["window_start"] < w["window_end"] for w in body["windows"])
    assert _get(base, "/v1/usage", tokens_m("globex")).json()["models"] in ([], ["slm-globex"])


def test_audit_is_admin_only_one_at_a_time_in_turns_and_shows_the_tenants_findings(
    target: tuple[Settings, str], conversations: dict[str, list[str]], tokens_m: Callable[..., str]
) -> None:
    _, base = target
    forged = httpx.post(
        f"{base}/v1/audit", headers=_auth(tokens_m("acme", "subscriber,producer")), timeout=10
    )
    assert forged.status_code == 403
    admin = tokens_m("acme", "admin")
    other = tokens_m("globex", "admin")
    with concurrent.futures.ThreadPoolExecutor(3) as pool:
        first = pool.submit(httpx.post, f"{base}/v1/audit", headers=_auth(admin), timeout=120)
        time.sleep(0.3)
        second = pool.submit(httpx.post, f"{base}/v1/audit", headers=_auth(admin), timeout=120)
        # Another tenant's audit reads every tenant's logs too: one at a time per edge.
        third = pool.submit(httpx.post, f"{base}/v1/audit", headers=_auth(other), timeout=120)
        answers = sorted([first.result(), second.result(), third.result()], key=lambda r: r.status_code)
    assert [a.status_code for a in answers] == [200, 409, 429], [a.text for a in answers]
    assert answers[1].headers["retry-after"] and answers[2].headers["retry-after"]
    assert "one is running" in answers[2].json()["detail"]
    report = answers[0].json()
    assert report["records_read"] > 0 and report["seconds"] >= 0
    assert report["ok"] is (not report["findings"] and report["complete"])
    assert sum(report["counts"].values()) == len(report["findings"])
    # globex was refused and waits for its turn: acme, which ran last, must let it go first.
    again = httpx.post(f"{base}/v1/audit", headers=_auth(admin), timeout=120)
    assert again.status_code == 429 and again.headers["retry-after"], again.text
    assert "another tenant has waited longer" in again.json()["detail"]
    assert httpx.post(f"{base}/v1/audit", headers=_auth(other), timeout=120).status_code == 200
    # globex was served: acme's turn again.
    assert httpx.post(f"{base}/v1/audit", headers=_auth(admin), timeout=120).status_code == 200


def test_console_is_served_without_a_token_and_routes_fall_back_to_index(
    target: tuple[Settings, str], tmp_path: Path, stack: Settings
) -> None:
    dist = tmp_path / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>ledgerflow console</title>")
    (dist / "assets" / "app.js").write_text("console.log('hi')")
    settings, _ = target
    http = f"127.0.0.1:{free_port()}"
    edge = start(
        settings.with_overrides(http=http),
        "edge-console",
        "serve",
        log_dir=stack.state_dir / "test-logs" / "test_console_api",
        extra_env={"LEDGERFLOW_CONSOLE_DIR": str(dist)},
    )
    base = f"http://{http}"
    try:
        wait_http_ready(edge, base)
        root = httpx.get(f"{base}/", timeout=10)
        assert root.status_code == 307 and root.headers["location"] == "/console/"
        page = httpx.get(f"{base}/console/", timeout=10)
        assert page.status_code == 200 and "ledgerflow console" in page.text
        assert httpx.get(f"{base}/console/assets/app.js", timeout=10).text == "console.log('hi')"
        route = httpx.get(f"{base}/console/conversations/c-1", timeout=10)
        assert route.status_code == 200 and "ledgerflow console" in route.text
        assert httpx.get(f"{base}/console/assets/missing.js", timeout=10).status_code == 404
        assert httpx.get(f"{base}/v1/conversations", timeout=10).status_code == 401  # the APIs stay protected
        (dist / "index.html").unlink()
        missing = httpx.get(f"{base}/console/", timeout=10)
        assert missing.status_code == 404 and "make console" in missing.json()["detail"]
    finally:
        edge.stop()


def test_redis_down_is_a_503_with_retry_after(
    stack: Settings, tmp_path: Path, tokens_m: Callable[..., str]
) -> None:
    node = redis_stack.RedisNode(tmp_path / "redis", "127.0.0.1", free_port())
    redis_stack.start(node)
    settings = stack.with_overrides(
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.", redis_url=f"redis://127.0.0.1:{node.port}/0"
    )
    asyncio.run(ensure_topics(settings))
    http = f"127.0.0.1:{free_port()}"
    edge = start(
        settings.with_overrides(http=http),
        "edge-redis",
        "serve",
        log_dir=stack.state_dir / "test-logs" / "console-redis",
    )
    base = f"http://{http}"
    try:
        wait_http_ready(edge, base)
        token = tokens_m("acme", "subscriber,admin")
        assert _get(base, "/v1/conversations", token).status_code == 200
        recorded = read_pid_file(node.process.pid_file)
        assert recorded is not None, "the private Redis wrote no pid file"
        os.kill(recorded.pid, signal.SIGKILL)
        for path in ("/v1/conversations", "/v1/usage", "/v1/overview"):
            resp = _get(base, path, token)
            assert resp.status_code == 503, (path, resp.text)
            assert resp.headers["retry-after"] and resp.headers["content-type"] == "application/problem+json"
        audit = httpx.post(f"{base}/v1/audit", headers=_auth(token), timeout=30)
        assert audit.status_code == 503 and audit.headers["retry-after"]
    finally:
        edge.stop()
        stop_process(node.process)
