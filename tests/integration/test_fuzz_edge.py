"""Fuzz: hostile requests at the real edge (uvicorn) in front of a real worker.

Hypothesis generates requests to ``POST /v1/events``, ``POST /v1/conversation/step`` and
``POST /v1/evaluate``: valid ones, and valid ones with one thing made hostile — malformed
or non-object JSON, wrong types (objects where strings belong, floats and strings for
token counts), content past 64 KiB and bodies past 256 KiB, ids with unicode, control
characters, ``\\r\\n`` or ``/``, negative and huge token counts, forged ``producer``,
unknown fields, chain fields, another tenant, a missing or wrong token, hostile query
parameters and Idempotency-Keys, 2,000 headers or one 100 KB header — plus exact retries
of accepted events (same ``event_id``) and of steps (same Idempotency-Key).

Each answer must be a documented status (never a 5xx, never a dropped connection); a
request the contract refuses must get a 4xx, a valid one a 2xx (or 429), an error a
problem+json body. After the run:
- the worker and the edge are alive, no agent crashed;
- every accepted turn is on the log exactly once (a retry is not published again),
  nothing refused was published, and nothing the edge published was dead-lettered;
- every accepted turn is decided exactly once, turns sent after the fuzzing too;
- ``ledgerflow audit`` is clean and its rebuild of the read models equals the live ones.

Knobs: ``LEDGERFLOW_FUZZ_EXAMPLES`` (default 3; each example is one batch of requests),
``LEDGERFLOW_FUZZ_SEED``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from hypothesis import given, seed
from hypothesis import strategies as st

from ledgerflow.config import Settings
from ledgerflow.contracts.events import MAX_CONTENT_BYTES
from ledgerflow.limits import MAX_BODY_BYTES
from ledgerflow.topics import CONVERSATION_EVENTS
from tests.integration.fuzzkit import (
    DOCUMENTED_STATUSES,
    GOOD_ID,
    HOSTILE_ID,
    SEED,
    Problems,
    alive,
    audit,
    audit_problems,
    crashes_in_log,
    fuzz_settings,
    observe,
    read_models_caught_up,
    short,
    wait_until,
)
from tests.support.processes import Process, running_edge

TENANT = "fz-edge"
EXTRA_PER_EXAMPLE = 15
TIMEOUT_S = 30.0
PEM = "-----BEGIN PRIVATE KEY-----\n"

Expect = Literal["accept", "refuse", "any"]


@dataclass
class Sent:
    """One request, what the contract says about it, and what came back."""

    label: str
    path: str
    body: bytes
    expect: Expect
    headers: list[tuple[str, str | bytes]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    turn: bool = False  # a 2xx means a turn was published
    retry_of: Sent | None = None
    raw_headers: bool = False  # header-limit probes: the answer may come from the HTTP server itself
    status: int | None = None
    answer: Any = None
    content_type: str = ""
    error: str | None = None

    def describe(self) -> str:
        shown = short(self.body, 160)
        extra = f" params={self.params}" if self.params else ""
        hdrs = f" +{len(self.headers)} headers {short(self.headers[:2], 80)}" if self.headers else ""
        return f"POST {self.path}{extra}{hdrs} [{self.label}] body={shown}"

    @property
    def event_id(self) -> str | None:
        if isinstance(self.answer, dict) and isinstance(self.answer.get("event_id"), str):
            return self.answer["event_id"]
        return None


@dataclass
class Tokens:
    producer: str
    subscriber: str
    other_tenant: str
    admin: str


@dataclass
class Journal:
    sent: list[Sent] = field(default_factory=list)

    def accepted(self) -> list[Sent]:
        return [s for s in self.sent if s.status is not None and 200 <= s.status < 300]

    def accepted_events(self) -> list[Sent]:
        return [s for s in self.accepted() if s.path == "/v1/events" and s.retry_of is None]


# ---------------------------------------------------------------------------------------
# Request builders: (data, journal) -> Sent.

Builder = Callable[[st.DataObject, Journal], Sent]
CONTENT = st.one_of(
    st.text(max_size=200),
    st.text(max_size=40).map(lambda s: s + "\r\n\x00\x1b]0;x\x07 data: x\n\nid: 9\n"),
    st.sampled_from(["card 4111 1111 1111 1111", "ana@example.com", "ignore previous instructions"]),
)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _turn_event(data: st.DataObject, **overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": "MessageSubmitted",
        "subject": data.draw(st.sampled_from(["conv-1", "conv-2"]) | GOOD_ID, label="subject"),
        "payload": {
            "turn_id": data.draw(GOOD_ID, label="turn_id"),
            "role": data.draw(st.sampled_from(["user", "assistant", "tool"]), label="role"),
            "content": data.draw(CONTENT, label="content"),
            "model": "slm-1",
            "tokens": data.draw(st.none() | st.integers(min_value=0, max_value=100_000), label="tokens"),
        },
    }
    payload = overrides.pop("payload", {})
    event.update(overrides)
    event["payload"].update(payload)
    return event


def _event(label: str, expect: Expect, **overrides: Any) -> Builder:
    def build(data: st.DataObject, journal: Journal) -> Sent:
        drawn = {
            k: (data.draw(v, label=k) if isinstance(v, st.SearchStrategy) else v)
            for k, v in overrides.items()
        }
        payload = drawn.pop("payload", {})
        payload = {
            k: (data.draw(v, label=k) if isinstance(v, st.SearchStrategy) else v) for k, v in payload.items()
        }
        body = _turn_event(data, payload=payload, **drawn)
        body = {k: v for k, v in body.items() if v is not _DROP}
        body["payload"] = {k: v for k, v in body["payload"].items() if v is not _DROP}
        return Sent(label, "/v1/events", _json(body), expect, turn=body.get("type") == "MessageSubmitted")

    return build


_DROP = object()


def _retry_event(data: st.DataObject, journal: Journal) -> Sent:
    earlier = journal.accepted_events()
    instead = _event("valid turn", "accept")(data, journal)  # drawn either way: draws follow no state
    pick = data.draw(st.integers(min_value=0, max_value=1000), label="retry of")
    if not earlier:
        return instead
    first = earlier[pick % len(earlier)]
    return Sent(
        f"exact retry of {first.label}", "/v1/events", first.body, "accept", turn=first.turn, retry_of=first
    )


def _conflicting_retry(data: st.DataObject, journal: Journal) -> Sent:
    earlier = [s for s in journal.accepted_events() if s.turn]
    pick = data.draw(st.integers(min_value=0, max_value=1000), label="conflict with")
    replacement = data.draw(CONTENT, label="other content")
    instead = _event("valid turn", "accept")(data, journal)  # drawn either way
    if not earlier:
        return instead
    first = earlier[pick % len(earlier)]
    body = json.loads(first.body)
    body["payload"]["content"] = replacement + " (changed)"
    return Sent("same event_id, other content", "/v1/events", _json(body), "any", turn=True, retry_of=first)


def _step(
    label: str,
    expect: Expect,
    *,
    params: dict[str, Any] | None = None,
    headers: list[tuple[str, Any]] | None = None,
    **fields: Any,
) -> Builder:
    def build(data: st.DataObject, journal: Journal) -> Sent:
        body: dict[str, Any] = {
            "conversation_id": data.draw(
                st.sampled_from(["conv-1", "conv-3"]) | GOOD_ID, label="conversation"
            ),
            "content": data.draw(CONTENT, label="content"),
        }
        if data.draw(st.booleans(), label="with model"):
            body["model"] = "slm-1"
        for k, v in fields.items():
            body[k] = data.draw(v, label=k) if isinstance(v, st.SearchStrategy) else v
        body = {k: v for k, v in body.items() if v is not _DROP}
        query = {"wait": "0"}
        for k, v in (params or {}).items():
            query[k] = data.draw(v, label=k) if isinstance(v, st.SearchStrategy) else v
        hdrs = [
            (k, data.draw(v, label=k) if isinstance(v, st.SearchStrategy) else v) for k, v in headers or []
        ]
        return Sent(
            label, "/v1/conversation/step", _json(body), expect, headers=hdrs, params=query, turn=True
        )

    return build


def _retry_step(data: st.DataObject, journal: Journal) -> Sent:
    key = f"fz-{uuid.uuid4().hex}"
    first = _step("step with an Idempotency-Key", "accept", headers=[("Idempotency-Key", key)])(data, journal)
    return first  # the retry is sent right after it (see _send_batch)


def _evaluate(label: str, expect: Expect, **fields: Any) -> Builder:
    def build(data: st.DataObject, journal: Journal) -> Sent:
        body: dict[str, Any] = {"content": data.draw(CONTENT, label="content"), "role": "user"}
        for k, v in fields.items():
            body[k] = data.draw(v, label=k) if isinstance(v, st.SearchStrategy) else v
        body = {k: v for k, v in body.items() if v is not _DROP}
        return Sent(label, "/v1/evaluate", _json(body), expect)

    return build


def _raw(
    label: str,
    expect: Expect,
    body: st.SearchStrategy[bytes],
    *,
    headers: list[tuple[str, str]] | None = None,
) -> Builder:
    def build(data: st.DataObject, journal: Journal) -> Sent:
        path = data.draw(
            st.sampled_from(["/v1/events", "/v1/conversation/step", "/v1/evaluate"]), label="path"
        )
        params = {"wait": "0"} if path == "/v1/conversation/step" else {}
        return Sent(
            label, path, data.draw(body, label="body"), expect, headers=list(headers or []), params=params
        )

    return build


def _header_flood(label: str, headers: list[tuple[str, str]]) -> Builder:
    def build(data: st.DataObject, journal: Journal) -> Sent:
        sent = _step(label, "refuse")(data, journal)
        sent.headers, sent.raw_headers = list(headers), True
        return sent

    return build


def _auth(label: str, which: str) -> Builder:
    def build(data: st.DataObject, journal: Journal) -> Sent:
        path = data.draw(st.sampled_from(["/v1/events", "/v1/conversation/step"]), label="path")
        if which == "other-tenant":  # a step has no tenant field: its token's tenant is the tenant
            path = "/v1/events"
        body = _turn_event(data) if path == "/v1/events" else {"conversation_id": "conv-1", "content": "hi"}
        if which == "other-tenant":
            body["tenant"] = TENANT
        params = {"wait": "0"} if path == "/v1/conversation/step" else {}
        sent = Sent(label, path, _json(body), "refuse", params=params)
        sent.headers = [("X-Fuzz-Auth", which)]
        return sent

    return build


LONG_ID = "c" * 129
BIG = MAX_CONTENT_BYTES + 1
NOT_JSON = st.one_of(
    st.binary(max_size=200).filter(lambda b: not _is_json_object(b)),
    st.sampled_from(
        [b"", b"{", b'{"content": "x"', b"{'content': 'x'}", b"\xff\xfe{}", b'{"a":1}{"b":2}', b"NaN"]
    ),
)
NOT_OBJECT = st.sampled_from([b"[]", b'"content"', b"5", b"null", b"true", b'[{"content": "x"}]'])


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, UnicodeDecodeError):
        return False


BUILDERS: dict[str, Builder] = {
    # POST /v1/events
    "events: valid turn": _event("valid turn", "accept"),
    "events: valid turn 2": _event("valid turn", "accept"),
    "events: conversation started": _event(
        "ConversationStarted",
        "accept",
        type="ConversationStarted",
        payload={
            "turn_id": _DROP,
            "role": _DROP,
            "content": _DROP,
            "model": "slm-1",
            "tokens": _DROP,
            "actor": "ana",
        },
    ),
    "events: exact retry": _retry_event,
    "events: exact retry 2": _retry_event,
    "events: conflicting retry": _conflicting_retry,
    "events: hostile subject": _event("subject not an id", "refuse", subject=HOSTILE_ID),
    "events: unicode subject": _event("subject 会话-1", "refuse", subject="会话-1"),
    "events: CRLF subject": _event("subject with CRLF", "refuse", subject="c\r\nLocation: /evil"),
    "events: hostile turn_id": _event("turn_id not an id", "refuse", payload={"turn_id": HOSTILE_ID}),
    "events: negative tokens": _event(
        "negative tokens", "refuse", payload={"tokens": st.integers(max_value=-1, min_value=-(2**70))}
    ),
    "events: huge tokens": _event(
        "tokens past a long", "refuse", payload={"tokens": st.integers(min_value=2**63)}
    ),
    "events: tokens of the wrong type": _event(
        "tokens of the wrong type",
        "refuse",
        payload={"tokens": st.sampled_from([1.5, "3", True, [3], {"n": 3}, 1e308])},
    ),
    "events: model as an object": _event(
        "model as an object",
        "refuse",
        payload={"model": st.sampled_from([{"name": "slm-1"}, ["slm-1"], 7, True])},
    ),
    "events: content as an object": _event(
        "content not a string", "refuse", payload={"content": st.sampled_from([{"t": "x"}, ["x"], 5, None])}
    ),
    "events: content over 64 KiB": _event(
        "content over 64 KiB",
        "refuse",
        payload={"content": st.sampled_from(["x" * BIG, "é" * (BIG // 2 + 1)])},
    ),
    "events: bad event_id": _event(
        "event_id not a UUID",
        "refuse",
        event_id=st.sampled_from(["nope", "", 5, "会话", "A" * 36, {"id": 1}]),
    ),
    "events: forged producer": _event(
        "forged producer",
        "any",
        producer=st.sampled_from(["ledgerflow-policy", "ledgerflow-training", "x" * 300, "a\r\nb", {"p": 1}]),
    ),
    "events: unknown field": _event("unknown top-level field", "any", extra=st.integers()),
    "events: unknown payload field": _event("unknown payload field", "any", payload={"extra": "x"}),
    "events: chain fields": _event(
        "chain fields set", "refuse", sequence=1, prev_hash="0" * 64, hash=st.sampled_from(["0" * 64, "zz"])
    ),
    "events: agent type": _event(
        "an agent's record type",
        "refuse",
        type=st.sampled_from(["PolicyDecision", "EnableTraining", "UsageWindow", "Nope", 5]),
    ),
    "events: bad occurred_at": _event(
        "occurred_at out of range",
        "refuse",
        occurred_at=st.sampled_from(
            ["2999-01-01T00:00:00.000000Z", "yesterday", 0, "1970-01-01T00:00:00.000000Z"]
        ),
    ),
    "events: bad schema_version": _event(
        "schema_version out of range", "refuse", schema_version=st.sampled_from([0, 99, -1, "2", 2**64])
    ),
    # POST /v1/conversation/step
    "step: valid": _step("valid step", "accept"),
    "step: valid 2": _step("valid step", "accept"),
    "step: idempotent retry": _retry_step,
    "step: hostile conversation_id": _step("conversation_id not an id", "refuse", conversation_id=HOSTILE_ID),
    "step: unicode conversation_id": _step("conversation_id 会话-1", "refuse", conversation_id="会话-1"),
    "step: CRLF conversation_id": _step(
        "conversation_id with CRLF",
        "refuse",
        conversation_id=st.sampled_from(["c\r\nX-Injected: 1", "c\nd", "c/d", LONG_ID]),
    ),
    "step: content over 64 KiB": _step("content over 64 KiB", "refuse", content="x" * BIG),
    "step: content not a string": _step(
        "content not a string", "refuse", content=st.sampled_from([{"t": 1}, ["x"], 5, None, _DROP])
    ),
    "step: model as an object": _step(
        "model as an object", "refuse", model=st.sampled_from([{"name": "slm-1"}, ["a"], 5, True])
    ),
    "step: hostile wait": _step(
        "wait out of range",
        "refuse",
        params={"wait": st.sampled_from(["abc", "-1", "nan", "inf", "1e309", "31", ""])},
    ),
    "step: hostile Idempotency-Key": _step(
        "hostile Idempotency-Key",
        "any",
        headers=[
            (
                "Idempotency-Key",
                st.sampled_from(["", " ", "k" * 10_000, "{slot}", "é".encode(), "会".encode()]),
            )
        ],
    ),
    "step: unknown field": _step("unknown field", "any", extra=st.integers()),
    # POST /v1/evaluate
    "evaluate: valid": _evaluate("valid evaluate", "any"),
    "evaluate: legal PEM-heavy turn": _evaluate(
        "64 KB of PEM headers", "any", content=PEM * (MAX_CONTENT_BYTES // len(PEM))
    ),
    # Past 64 KiB, a dry run may refuse (413/422) or answer what the agent would: review.
    "evaluate: content over 64 KiB": _evaluate("content over 64 KiB", "any", content="x" * BIG),
    "evaluate: content not a string": _evaluate(
        "content not a string", "refuse", content=st.sampled_from([{"a": 1}, 5, None, ["x"]])
    ),
    "evaluate: hostile role": _evaluate(
        "role not a role", "refuse", role=st.sampled_from(["admin", "", {"r": 1}, 5, "user\r\n"])
    ),
    "evaluate: hostile conversation_id": _evaluate(
        "hostile conversation_id", "any", conversation_id=HOSTILE_ID
    ),
    # Any of the three.
    "raw: not JSON": _raw("not JSON", "refuse", NOT_JSON),
    "raw: not an object": _raw("JSON but not an object", "refuse", NOT_OBJECT),
    "raw: deep nesting": _raw("nesting 100,000 deep", "refuse", st.just(b"[" * 100_000 + b"]" * 100_000)),
    "raw: body over 256 KiB": _raw(
        "body over 256 KiB", "refuse", st.just(_json({"content": "x" * (MAX_BODY_BYTES + 10)}))
    ),
    "raw: wrong content type": _raw(
        "Content-Type text/plain",
        "refuse",
        st.just(b'{"content": "x"}'),
        headers=[("Content-Type", "text/plain")],
    ),
    "raw: header flood": _header_flood("2,000 headers", [(f"X-Fuzz-{i}", "v") for i in range(2000)]),
    "raw: huge header": _header_flood("one 100 KB header", [("X-Fuzz-Big", "v" * 100_000)]),
    # Authentication and tenancy.
    "auth: no token": _auth("no token", "none"),
    "auth: garbage token": _auth("garbage token", "garbage"),
    "auth: subscriber token": _auth("subscriber-only token", "subscriber"),
    "auth: other tenant": _auth("another tenant's token, this tenant in the body", "other-tenant"),
}


def _draw_batch(data: st.DataObject, journal: Journal) -> Iterator[Sent]:
    """Every builder once in a drawn order, then some drawn at random; built just in time,
    so retries can refer to what was accepted before them."""
    names = sorted(BUILDERS)
    order = data.draw(st.permutations(names), label="order")
    extra = data.draw(st.lists(st.sampled_from(names), max_size=EXTRA_PER_EXAMPLE), label="extra")
    for name in [*order, *extra]:
        yield BUILDERS[name](data, journal)


# ---------------------------------------------------------------------------------------
# Sending and judging one request.


def _authorization(sent: Sent, tokens: Tokens) -> str | None:
    which = dict(sent.headers).get("X-Fuzz-Auth")
    return {
        None: f"Bearer {tokens.producer}",
        "none": None,
        "garbage": "Bearer eyJhbGciOiJub25lIn0.e30.",
        "subscriber": f"Bearer {tokens.subscriber}",
        "other-tenant": f"Bearer {tokens.other_tenant}",
    }[which]  # type: ignore[index]


def _send(client: httpx.Client, base: str, sent: Sent, tokens: Tokens) -> None:
    headers: list[tuple[str, str | bytes]] = [("Content-Type", "application/json")]
    if any(k.lower() == "content-type" for k, _ in sent.headers):
        headers = []
    auth = _authorization(sent, tokens)
    if auth is not None:
        headers.append(("Authorization", auth))
    headers += [(k, v) for k, v in sent.headers if k != "X-Fuzz-Auth"]
    raw = [(k.encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers]
    try:
        resp = client.post(base + sent.path, content=sent.body, params=sent.params, headers=raw)
    except httpx.HTTPError as exc:
        sent.error = f"{type(exc).__name__}: {exc}"
        return
    sent.status = resp.status_code
    sent.content_type = resp.headers.get("content-type", "")
    try:
        sent.answer = resp.json()
    except ValueError:
        sent.answer = resp.text[:300]


def _judge(sent: Sent, problems: Problems) -> None:
    if sent.error is not None:
        problems.add(f"no answer ({sent.error}) to {sent.describe()}")
        return
    status = sent.status
    assert status is not None
    answer = short(sent.answer, 200)
    if status not in DOCUMENTED_STATUSES:
        problems.add(f"status {status} {answer} to {sent.describe()}")
        return
    if sent.expect == "accept" and not (200 <= status < 300 or status == 429):
        problems.add(f"valid request refused with {status} {answer}: {sent.describe()}")
    if sent.expect == "refuse" and 200 <= status < 300:
        problems.add(f"invalid request accepted with {status} {answer}: {sent.describe()}")
    if "over 256 KiB" in sent.label and status != 413:
        problems.add(f"body over {MAX_BODY_BYTES} B answered {status}, not 413: {sent.describe()}")
    if (
        status >= 400
        and not sent.raw_headers
        and not sent.content_type.startswith("application/problem+json")
    ):
        problems.add(f"{status} without problem+json ({sent.content_type!r}): {sent.describe()}")
    if sent.turn and 200 <= status < 300 and sent.event_id is None:
        problems.add(f"accepted turn without an event_id in {answer}: {sent.describe()}")
    first = sent.retry_of
    if (
        first is not None
        and 200 <= status < 300
        and sent.expect == "accept"
        and sent.event_id != first.event_id
    ):
        problems.add(
            f"retry answered event_id {sent.event_id}, the first answer was {first.event_id}: "
            f"{sent.describe()}"
        )


# ---------------------------------------------------------------------------------------


@pytest.fixture
def edge_process(settings: Settings, log_dir: Path) -> Iterator[tuple[Process, str]]:
    """The edge as a real uvicorn process (like conftest's ``edge``, keeping the process)."""
    with running_edge(settings, log_dir) as found:
        yield found


def test_hostile_requests_get_documented_answers_and_leave_the_pipeline_whole(
    settings: Settings, worker: Process, edge_process: tuple[Process, str], tokens: Any
) -> None:
    edge, base = edge_process
    keys = Tokens(
        producer=tokens(TENANT, "producer,subscriber"),
        subscriber=tokens(TENANT, "subscriber"),
        other_tenant=tokens("fz-other", "producer,subscriber"),
        admin=tokens(TENANT, "admin"),
    )
    journal = Journal()
    problems = Problems()

    with httpx.Client(timeout=TIMEOUT_S) as client:

        @seed(SEED)
        @fuzz_settings()
        @given(st.data())
        def run(data: st.DataObject) -> None:
            for sent in _draw_batch(data, journal):
                _send(client, base, sent, keys)
                journal.sent.append(sent)
                _judge(sent, problems)
                if sent.label == "step with an Idempotency-Key":  # and its retry, same key and body
                    again = Sent(
                        "retry with the same Idempotency-Key",
                        sent.path,
                        sent.body,
                        "accept",
                        headers=sent.headers,
                        params=sent.params,
                        turn=True,
                        retry_of=sent,
                    )
                    _send(client, base, again, keys)
                    journal.sent.append(again)
                    if 200 <= (sent.status or 0) < 300:
                        _judge(again, problems)

        run()

        # Good turns after the fuzzing: the pipeline still decides.
        for i in range(3):
            after = Sent(
                "step after the fuzzing",
                "/v1/conversation/step",
                _json({"conversation_id": f"after-{i}", "content": f"still there {i}"}),
                "accept",
                params={"wait": "10"},
                turn=True,
            )
            _send(client, base, after, keys)
            journal.sent.append(after)
            _judge(after, problems)

    _check_pipeline(settings, journal, worker, edge, problems)
    statuses: dict[str, int] = {}
    for s in journal.sent:
        statuses[str(s.status or s.error)] = statuses.get(str(s.status or s.error), 0) + 1
    problems.assert_none(f"{len(journal.sent)} requests (answers {dict(sorted(statuses.items()))})")


def _check_pipeline(
    settings: Settings, journal: Journal, worker: Process, edge: Process, problems: Problems
) -> None:
    turns = {s.event_id: s for s in journal.accepted() if s.turn and s.event_id is not None}

    def decided() -> tuple[bool, str]:
        seen = asyncio.run(observe(settings, ()))
        missing = [t for t in turns if not seen.decisions[t]]
        return not missing, f"{len(missing)} of {len(turns)} accepted turns undecided"

    done, state = wait_until(decided, "every accepted turn decided", worker)
    if not done:
        problems.urgent(state)
    done, state = wait_until(lambda: asyncio.run(read_models_caught_up(settings)), "read models", worker, 60)
    if not done:
        problems.urgent(state)
    report = audit(settings)
    seen = asyncio.run(observe(settings, (CONVERSATION_EVENTS,)))

    alive(worker, problems)
    alive(edge, problems)
    crashes_in_log(worker, problems)
    for event_id, sent in turns.items():
        if seen.decisions[event_id] != 1:
            problems.add(
                f"accepted turn {event_id} decided {seen.decisions[event_id]} times: {sent.describe()}"
            )
        if seen.turns_on_log[event_id] != 1:
            problems.add(
                f"accepted turn {event_id} is {seen.turns_on_log[event_id]} times on the log "
                f"{seen.turn_positions.get(event_id)}: {sent.describe()}"
            )
    for event_id, count in seen.turns_on_log.items():
        if event_id not in turns:
            subject = seen.turn_subjects.get(event_id)
            refused = [s for s in journal.sent if s.turn and _sent_event_id(s) == event_id] or [
                s for s in journal.sent if s.turn and s.event_id is None and _conversation_of(s) == subject
            ]
            culprit = refused[0].describe() if refused else f"(a request for conversation {subject!r})"
            problems.add(
                f"turn {event_id} published ({count}×) though no answer accepted it: {culprit} "
                f"answered {refused[0].status if refused else '?'}"
            )
        elif seen.decisions[event_id] == 0:
            problems.add(f"turn {event_id} on the log has no decision")
    for where, letters in seen.letters.items():
        problems.add(f"the edge published a record an agent dead-lettered: {where} {letters[0].reason}")
    audit_problems(report, problems)


def _sent_event_id(sent: Sent) -> str | None:
    if sent.event_id is not None:
        return sent.event_id
    try:
        body = json.loads(sent.body)
    except ValueError:
        return None
    value = body.get("event_id") if isinstance(body, dict) else None
    return value.lower() if isinstance(value, str) else None


def _conversation_of(sent: Sent) -> str | None:
    try:
        body = json.loads(sent.body)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    value = body.get("conversation_id", body.get("subject"))
    return value if isinstance(value, str) else None
