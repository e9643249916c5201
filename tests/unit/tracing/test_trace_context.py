"""W3C trace context: parsing hostile headers, tracestate, acceptance at the edge, log fields."""

from __future__ import annotations

import asyncio
import logging

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from ledgerflow.api.tracing import TraceContextMiddleware
from ledgerflow.metrics import TRACE_CONTEXT_REPLACED
from ledgerflow.tracing.context import TraceContext, accept, clean_tracestate, parse_traceparent, trace_id_of
from ledgerflow.tracing.current import bind, current_trace, from_headers, install_log_fields, kafka_headers

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
GOOD = f"00-{TRACE}-{SPAN}-01"


def test_a_valid_traceparent_parses() -> None:
    assert parse_traceparent(GOOD) == TraceContext(TRACE, SPAN, "01")
    assert trace_id_of(GOOD) == TRACE


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        GOOD.upper(),  # uppercase hex is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-1",
        f"00-{TRACE}-{SPAN}-zz",
        f"0-{TRACE}-{SPAN}-01",
        f"00-{TRACE}x-{SPAN}-01",
        "00-" + "a" * 5000,
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE}-{SPAN}-01\x00",
    ],
)
def test_invalid_traceparents_are_refused(value: str) -> None:
    assert parse_traceparent(value) is None


def test_a_future_version_may_append_fields() -> None:
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-what-ever") == TraceContext(TRACE, SPAN, "01")


def test_tracestate_is_kept_when_valid_and_dropped_when_not() -> None:
    assert (
        clean_tracestate("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7")
        == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
    )
    assert clean_tracestate("tenant@vendor=x") == "tenant@vendor=x"
    for bad in (
        "",
        "novalue",
        "Upper=x",
        "a=1,a=2",
        "k=" + "v" * 600,
        ",".join(f"k{i}=v" for i in range(33)),
        "k=a,b",
    ):
        assert clean_tracestate(bad) is None, bad


def test_accept_continues_a_valid_trace_and_replaces_an_invalid_one() -> None:
    kept = accept(GOOD, "congo=x", "f" * 32, "e" * 16)
    assert kept == type(kept)(TraceContext(TRACE, "e" * 16, "01", "congo=x"), None)
    assert accept("nonsense", "congo=x", "f" * 32, "e" * 16).replaced == "invalid"
    fresh = accept(None, None, "f" * 32, "e" * 16)
    assert (fresh.replaced, fresh.context.trace_id, fresh.context.tracestate) == ("missing", "f" * 32, None)


def test_kafka_headers_round_trip_and_bad_headers_are_ignored() -> None:
    ctx = TraceContext(TRACE, SPAN, "01", "congo=x")
    assert from_headers(kafka_headers(ctx)) == ctx
    assert from_headers([("traceparent", b"junk")]) is None
    assert from_headers([("traceparent", None), ("other", b"x")]) is None
    assert kafka_headers(None) == []


def test_log_records_carry_the_bound_fields_and_tasks_do_not_share_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    install_log_fields()
    log = logging.getLogger("ledgerflow.test.tracing")

    async def one(trace: str, tenant: str) -> None:
        with bind(TraceContext(trace, SPAN), tenant=tenant, conversation="c", offset=7):
            await asyncio.sleep(0)
            log.warning("inside %s", tenant)

    async def both() -> None:
        await asyncio.gather(one("a" * 32, "acme"), one("b" * 32, "globex"))

    with caplog.at_level(logging.WARNING, logger="ledgerflow.test.tracing"):
        asyncio.run(both())
        log.warning("outside")
    seen = {(r.getMessage(), r.trace_id, r.tenant, r.offset) for r in caplog.records}  # type: ignore[attr-defined]
    assert seen == {
        ("inside acme", "a" * 32, "acme", 7),
        ("inside globex", "b" * 32, "globex", 7),
        ("outside", None, None, None),
    }
    assert current_trace.get() is None


def _app() -> Starlette:
    async def echo(request: Request) -> PlainTextResponse:
        trace = current_trace.get()
        assert trace is not None
        return PlainTextResponse(f"{trace.trace_id} {trace.tracestate}")

    return Starlette(routes=[Route("/", echo)], middleware=[])


def test_the_edge_middleware_continues_replaces_and_counts() -> None:
    client = TestClient(TraceContextMiddleware(_app()))
    before = TRACE_CONTEXT_REPLACED.labels("invalid")._value.get()
    kept = client.get("/", headers={"traceparent": GOOD, "tracestate": "congo=x"})
    assert kept.text == f"{TRACE} congo=x"
    assert kept.headers["traceparent"].startswith(f"00-{TRACE}-") and kept.headers["traceparent"] != GOOD
    replaced = client.get("/", headers={"traceparent": "00-zz", "tracestate": "congo=x"})
    assert replaced.status_code == 200 and not replaced.text.startswith(TRACE)
    assert replaced.text.endswith(" None")  # a new trace carries no foreign tracestate
    assert parse_traceparent(replaced.headers["traceparent"]) is not None
    fresh = client.get("/")
    assert fresh.status_code == 200 and parse_traceparent(fresh.headers["traceparent"]) is not None
    assert TRACE_CONTEXT_REPLACED.labels("invalid")._value.get() == before + 1


def test_log_records_inside_an_agent_hook_describe_the_record(caplog: pytest.LogCaptureFixture) -> None:
    from ledgerflow.contracts import codec
    from ledgerflow.contracts.events import new_event
    from ledgerflow.contracts.payloads import MessageSubmitted
    from ledgerflow.tracing import spans

    install_log_fields()
    event = new_event(
        "MessageSubmitted",
        tenant="acme",
        subject="conv-9",
        payload=MessageSubmitted("t1", "user", "hi", "slm-1", None),
        producer="unit",
        occurred_at_micros=1_700_000_000_000_000,
        trace_id=GOOD,
    )

    class Message:
        topic, partition, offset, headers = "conversation.events", 0, 41, ()
        value = codec.encode(event)

    class Poison(Message):
        value = b"not avro"
        headers = (("traceparent", GOOD.encode()),)

    log = logging.getLogger("ledgerflow.test.tracing")
    with caplog.at_level(logging.WARNING, logger="ledgerflow.test.tracing"):
        with spans.consumed(Message(), "decide", []):
            log.warning("deciding")
        with spans.consumed(Poison(), "decide", []):
            log.warning("poison")
        log.warning("after")
    fields = [(r.trace_id, r.tenant, r.conversation, r.offset) for r in caplog.records]  # type: ignore[attr-defined]
    assert fields == [(TRACE, "acme", "conv-9", 41), (TRACE, None, None, 41), (None, None, None, None)]


def test_json_log_lines_carry_the_bound_trace_and_record_fields() -> None:
    import json as jsonlib

    from ledgerflow.logformat import JsonFormatter

    install_log_fields()
    with bind(TraceContext(TRACE, SPAN), tenant="acme", conversation="c-1", topic="t", partition=2, offset=9):
        record = logging.getLogger("ledgerflow.test.json").makeRecord(
            "x", logging.INFO, "f", 1, "hello", (), None
        )
    line = jsonlib.loads(JsonFormatter().format(record))
    assert {k: line[k] for k in ("trace_id", "tenant", "conversation", "topic", "partition", "offset")} == {
        "trace_id": TRACE,
        "tenant": "acme",
        "conversation": "c-1",
        "topic": "t",
        "partition": 2,
        "offset": 9,
    }
