"""JSON bodies whose values are of the wrong shape — a list or an object where a string is expected,
a value nested a thousand levels (orjson parses up to 1024), a 100,000-character string — at the real
edge: each is a 4xx problem whose detail is one short line, never a 500.

Before: ``{"type": []}`` on ``POST /v1/events`` was a 500 (``TypeError: unhashable type``), and a
deeply nested ``tenant``, ``producer``, ``event_id``, ``schema_version``, ``payload.role`` (events),
``producer`` (step), ``role`` (evaluate) or ``tenant`` (validate, publish) a 500 too
(``RecursionError`` while quoting it in the refusal); a long string was quoted whole (a 100 KB
``detail``), a rule pack's own values too (a rule's 100,000-character id three times: 300 KB)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest

from ledgerflow.config import Settings
from ledgerflow.kafka.admin import ensure_topics
from tests.integration.edgekit import assert_problem, bearer
from tests.support.processes import Process, running_edge

DEEP = "[" * 1000 + "]" * 1000
DEEP_OBJECT = '{"a":' * 1000 + "1" + "}" * 1000
LONG = json.dumps("x" * 100_000)
MARK = '"@@"'
TURN = {
    "type": "MessageSubmitted",
    "subject": "c1",
    "payload": {"turn_id": "t1", "role": "user", "content": "hi", "model": "m", "tokens": None},
}
PACK = {"description": "d", "rules": [{"id": "r1", "when": {"keywords": ["pw"]}, "action": "deny"}]}


@pytest.fixture(scope="module")
def hostile_edge(stack: Settings) -> Iterator[tuple[Settings, Process, str]]:
    """One edge for every case (they publish nothing), its per-tenant CPU limits off so that each
    case reaches its handler's checks."""
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings))
    unlimited = {
        "LEDGERFLOW_VALIDATE_RATE_PER_TENANT": "0",
        "LEDGERFLOW_EVALUATE_RATE_PER_TENANT": "0",
        "LEDGERFLOW_PUBLISH_RATE_PER_TENANT": "0",
    }
    log_dir = stack.state_dir / "test-logs" / "test_edge_hostile_values"
    with running_edge(settings, log_dir, unlimited) as (proc, base):
        yield settings, proc, base


def _with(base: dict, path: tuple[str | int, ...], raw: str) -> str:
    """``base`` as JSON text with the value at ``path`` replaced by the raw JSON ``raw``."""
    doc = json.loads(json.dumps(base))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = "@@"
    return json.dumps(doc).replace(MARK, raw)


CASES = [
    ("POST", "/v1/events", TURN, ("type",), "[]", 422),
    ("POST", "/v1/events", TURN, ("type",), "{}", 422),
    ("POST", "/v1/events", TURN, ("type",), DEEP, 422),
    ("POST", "/v1/events", TURN, ("type",), LONG, 422),
    ("POST", "/v1/events", TURN, ("tenant",), DEEP, 403),
    ("POST", "/v1/events", TURN, ("tenant",), LONG, 403),
    ("POST", "/v1/events", TURN, ("producer",), DEEP_OBJECT, 422),
    ("POST", "/v1/events", TURN, ("event_id",), DEEP, 422),
    ("POST", "/v1/events", TURN, ("schema_version",), DEEP, 422),
    ("POST", "/v1/events", TURN, ("payload", "role"), DEEP, 422),
    ("POST", "/v1/conversation/step", {"conversation_id": "c1", "content": "hi"}, ("producer",), DEEP, 422),
    ("POST", "/v1/evaluate", {"content": "hi"}, ("role",), DEEP, 422),
    ("POST", "/v1/evaluate", {"content": "hi"}, ("role",), LONG, 422),
    ("POST", "/v1/policy/validate", PACK, ("tenant",), DEEP, 403),
    ("POST", "/v1/policy/validate", PACK, ("tenant",), LONG, 403),
    ("PUT", "/v1/policy/rules", PACK, ("tenant",), DEEP_OBJECT, 403),
    # A rule pack's own values, refused by its schema: quoted whole before (the id three times).
    ("PUT", "/v1/policy/rules", PACK, ("description",), LONG, 422),
    ("PUT", "/v1/policy/rules", PACK, ("rules", 0, "id"), LONG, 422),
    ("PUT", "/v1/policy/rules", PACK, ("rules", 0, "action"), LONG, 422),
    ("PUT", "/v1/policy/rules", PACK, ("rules", 0, "when", "keywords", 0), LONG, 422),
    ("POST", "/v1/policy/validate", PACK, ("rules", 0, "id"), LONG, 422),
    ("POST", "/v1/policy/validate", PACK, ("rules", 0, "when"), LONG, 422),
]


@pytest.mark.parametrize(
    ("method", "path", "base", "field", "raw", "status"),
    CASES,
    ids=[f"{m} {p} {'.'.join(map(str, f))}={r[:6]}" for m, p, _, f, r, _ in CASES],
)
def test_a_value_of_the_wrong_shape_is_a_short_4xx(
    hostile_edge: tuple[Settings, Process, str],
    method: str,
    path: str,
    base: dict,
    field: tuple[str | int, ...],
    raw: str,
    status: int,
) -> None:
    settings, proc, edge = hostile_edge
    headers = bearer(settings, roles="producer,subscriber,admin") | {"Content-Type": "application/json"}
    errors_before = proc.log.read_text(errors="replace").count("unhandled error")
    resp = httpx.request(method, edge + path, content=_with(base, field, raw), headers=headers, timeout=10)
    detail = assert_problem(resp, status)["detail"]
    assert len(detail) < 600 and "\n" not in detail, detail[:200]
    assert proc.log.read_text(errors="replace").count("unhandled error") == errors_before


def test_a_long_query_value_or_content_type_is_quoted_briefly(
    hostile_edge: tuple[Settings, Process, str],
) -> None:
    """Before: ``?wait=`` of 5,000 characters and a Content-Type of 10,000 were quoted whole."""
    settings, _, edge = hostile_edge
    headers = bearer(settings)
    step = httpx.post(
        f"{edge}/v1/conversation/step?wait={'x' * 5000}",
        json={"conversation_id": "c1", "content": "hi"},
        headers=headers,
        timeout=10,
    )
    detail = assert_problem(step, 422)["detail"]
    assert detail.startswith("wait: a number of seconds is required") and len(detail) < 200, detail[:200]
    long_type = headers | {"Content-Type": "text/" + "y" * 10_000}
    typed = httpx.post(f"{edge}/v1/events", content=b"{}", headers=long_type, timeout=10)
    detail = assert_problem(typed, 400)["detail"]
    assert detail.startswith("expected Content-Type application/json") and len(detail) < 200, detail[:200]


def test_a_stream_asked_for_two_conversations_is_refused(hostile_edge: tuple[Settings, Process, str]) -> None:
    """``?conversation_id=a&conversation_id=b``: before, the edge silently followed the last one, so a
    proxy or filter in front that judged the first saw another conversation than the one streamed.
    Refused like a repeated ``tenant`` naming another (docs/api.md); the same value twice is one."""
    settings, _, edge = hostile_edge
    headers = bearer(settings, roles="subscriber")
    stream = f"{edge}/v1/conversation/stream"
    two = httpx.get(f"{stream}?conversation_id=c-1&conversation_id=c-2", headers=headers, timeout=10)
    detail = assert_problem(two, 422)["detail"]
    assert detail == "conversation_id: given 2 times with different values; send it once", detail
    same = httpx.head(f"{stream}?conversation_id=c-1&conversation_id=c-1", headers=headers, timeout=10)
    assert same.status_code == 200, same.text
