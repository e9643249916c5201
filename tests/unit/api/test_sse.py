"""SSE framing, the client parser, and the SSE knobs read from the environment."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from ledgerflow.api import sse
from ledgerflow.api.server import SseKnobs
from ledgerflow.errors import ValidationError
from ledgerflow.sse_client import FrameTooLarge, LineSplitter, SseEvent, parse


def _parse(raw: bytes) -> list[SseEvent]:
    async def lines() -> AsyncIterator[str]:
        for line in raw.decode().split("\n"):
            yield line

    async def collect() -> list[SseEvent]:
        return [e async for e in parse(lines())]

    return anyio.run(collect)


def test_data_frame_carries_the_cursor_as_id() -> None:
    raw = sse.data_frame("d3:1.e3:4", "MessageSubmitted", b'{"a":1}')
    assert raw == b'id: d3:1.e3:4\nevent: MessageSubmitted\ndata: {"a":1}\n\n'
    assert _parse(raw) == [SseEvent("MessageSubmitted", '{"a":1}', "d3:1.e3:4")]


@pytest.mark.parametrize("event", sorted(sse.CONTROL_EVENTS))
def test_control_frames_carry_no_id(event: str) -> None:
    raw = sse.control_frame(event, {"detail": "x"})
    assert b"id:" not in raw
    assert _parse(raw) == [SseEvent(event, '{"detail":"x"}', None)]


def test_control_frame_can_carry_a_retry_hint() -> None:
    raw = sse.control_frame("shutdown", retry_ms=2000)
    assert raw.startswith(b"retry: 2000\n")
    assert _parse(raw) == [SseEvent("shutdown", "{}", None, 2000)]


def test_unknown_control_event_is_refused() -> None:
    with pytest.raises(ValueError, match="not a control event"):
        sse.control_frame("MessageSubmitted")


def test_bare_retry_hint_dispatches_no_event() -> None:
    assert sse.retry_hint(1500) == b"retry: 1500\n\n"
    assert _parse(sse.retry_hint(1500)) == []


def test_parser_follows_whatwg_rules_for_comments_and_multiline_data() -> None:
    raw = b": comment\nevent: x\ndata: a\ndata:b\nid: 7\n\ndata: plain\n\n"
    assert _parse(raw) == [SseEvent("x", "a\nb", "7"), SseEvent("message", "plain", None)]


def test_sse_knobs_default_without_environment() -> None:
    assert SseKnobs.from_env({}) == SseKnobs(15.0, 1000, 30.0, 15.0, 32)


def test_sse_knobs_are_read_from_the_environment() -> None:
    env = {
        "LEDGERFLOW_SSE_HEARTBEAT_S": "0.5",
        "LEDGERFLOW_SSE_QUEUE": "10",
        "LEDGERFLOW_SSE_REAUTH_BEFORE_S": "2",
        "LEDGERFLOW_SSE_CATCH_UP_STALL_S": "3",
        "LEDGERFLOW_SSE_CATCH_UP_SLOTS": "1",
    }
    assert SseKnobs.from_env(env) == SseKnobs(0.5, 10, 2.0, 3.0, 1)


@pytest.mark.parametrize(
    "env",
    [
        {"LEDGERFLOW_SSE_QUEUE": "many"},
        {"LEDGERFLOW_SSE_QUEUE": "0"},
        {"LEDGERFLOW_SSE_QUEUE": "2.5"},  # was truncated to 2
        {"LEDGERFLOW_SSE_HEARTBEAT_S": "-1"},
        {"LEDGERFLOW_SSE_HEARTBEAT_S": "nan"},  # was accepted: nan is not below the minimum
        {"LEDGERFLOW_SSE_REAUTH_BEFORE_S": "inf"},  # was accepted
        {"LEDGERFLOW_SSE_CATCH_UP_STALL_S": "0"},  # a catch-up would give up before its first read
        {"LEDGERFLOW_SSE_CATCH_UP_STALL_S": "1"},  # below one empty 1 s read: a transaction marker at the end
        {"LEDGERFLOW_SSE_CATCH_UP_STALL_S": "inf"},  # the silent catch-up this bound is there to end
        {"LEDGERFLOW_SSE_CATCH_UP_SLOTS": "0"},  # no stream could ever catch up
    ],
)
def test_bad_sse_knob_is_refused_naming_the_variable(env: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match=next(iter(env))) as refused:
        SseKnobs.from_env(env)
    assert "\n" not in str(refused.value)


def test_checkpoint_is_an_id_only_block_that_dispatches_no_event() -> None:
    raw = sse.checkpoint("d3:1.e3:4")
    assert raw == b"id: d3:1.e3:4\n\n"
    assert _parse(raw) == []


def test_parser_can_surface_checkpoints_for_clients_that_track_the_last_event_id() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in (sse.checkpoint("e0:5") + sse.control_frame("heartbeat")).decode().split("\n"):
            yield line

    async def collect() -> list[SseEvent]:
        return [e async for e in parse(lines(), checkpoints=True)]

    assert anyio.run(collect) == [SseEvent("", "", "e0:5"), SseEvent("heartbeat", "{}", None)]


def _split(chunks: list[str], limit: int = 100) -> list[str]:
    splitter = LineSplitter(limit)
    return [line for chunk in chunks for line in splitter.feed(chunk)]


def test_lines_split_at_crlf_lf_and_cr_across_chunks() -> None:
    assert _split(["id: 1\nevent: x\r\ndata: {}\r\r\n"]) == ["id: 1", "event: x", "data: {}", ""]
    # A CRLF split between two chunks (an empty chunk between them too) is one line end.
    assert _split(["data: a\r", "", "\ndata: b\n", "\n"]) == ["data: a", "data: b", ""]
    assert _split(["da", "ta: ", "long\n"]) == ["data: long"]
    assert _split(["data: never ended"]) == []  # discarded at the end of the stream (WHATWG)


def test_a_line_longer_than_the_limit_is_refused_before_it_is_buffered_whole() -> None:
    splitter = LineSplitter(10)
    assert splitter.feed("0123456789\n") == ["0123456789"]
    splitter.feed("01234")
    with pytest.raises(FrameTooLarge, match="longer than 10 characters"):
        splitter.feed("567890")  # no line end yet: the 11th character is refused
    with pytest.raises(FrameTooLarge):
        LineSplitter(10).feed("0123456789A\n")  # ended in the same chunk: refused all the same
