"""The subscriber's pure parts: a data frame decoded (or refused in one line), a control frame's
data read leniently, and a 200 answer that is not an event stream told apart."""

from __future__ import annotations

import json

import pytest

from ledgerflow.client.subscriber import control_data, decode_frame
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.errors import InfrastructureError
from ledgerflow.sse_client import NotAnEventStream, SseEvent, check_event_stream


def test_a_data_frame_decodes_into_the_event() -> None:
    event = new_event(
        "MessageSubmitted",
        tenant="acme",
        subject="c1",
        payload=MessageSubmitted("t1", "user", "hello", "slm-1"),
        producer="app",
        occurred_at_micros=1_795_000_000_000_000,
    )
    frame = SseEvent("MessageSubmitted", json.dumps(event.to_json()), "d0:-1.e0:3")
    assert decode_frame(frame) == event


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ("{not json\nsecond line", "JSONDecodeError"),
        ('{"a": 1}', "ValidationError"),
        ("[1, 2]", ""),
        ('"text"', ""),
    ],
)
def test_a_data_frame_that_is_no_event_is_one_line_naming_its_id(data: str, reason: str) -> None:
    """Before, a garbled frame escaped as json's JSONDecodeError (a traceback in the caller)."""
    with pytest.raises(InfrastructureError) as caught:
        decode_frame(SseEvent("MessageSubmitted", data, "e0:7"))
    message = str(caught.value)
    assert message.startswith(
        "the stream sent a data frame that is not a ledgerflow event (id e0:7, event 'MessageSubmitted'): "
    )
    assert reason in message and "\n" not in message and len(message) < 400


def test_a_control_frame_with_garbled_data_keeps_its_kind() -> None:
    assert control_data(SseEvent("reset", '{"reason": "x"}', None)) == {"reason": "x"}
    assert control_data(SseEvent("shutdown", "", None)) == {}
    assert control_data(SseEvent("overflow", "{oops", None)) == {"data": "{oops"}
    assert control_data(SseEvent("reauth", "[1]", None)) == {"data": [1]}


def test_only_text_event_stream_is_an_event_stream() -> None:
    check_event_stream("http://e/v1/streams/tenant", "text/event-stream; charset=utf-8")
    check_event_stream("http://e/v1/streams/tenant", "Text/Event-Stream")
    for other in ("text/html; charset=utf-8", "application/json", ""):
        with pytest.raises(NotAnEventStream) as caught:
            check_event_stream("http://e/console/v1/streams/tenant", other)
        assert str(caught.value).startswith("http://e/console/v1/streams/tenant answered 200 with ")
        assert isinstance(caught.value, InfrastructureError)
