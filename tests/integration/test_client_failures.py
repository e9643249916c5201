"""ledgerflow.client where the way to the edge misbehaves: a base URL that answers a page, a
server that ends streams without a word, the same event or step key sent twice at once
(what a client's retry racing its first attempt looks like at the edge), and a token that
expired with no other to take."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ledgerflow.client import AsyncProducer, Decisions, Subscriber, TokenSource
from ledgerflow.config import Settings
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.errors import AuthError, InfrastructureError
from tests.integration.edgekit import events_on_log
from tests.support.processes import running_edge

Tokens = Callable[..., str]


def test_a_base_url_the_console_answers_is_one_error_not_a_reconnect_loop(
    settings: Settings, log_dir: Path, tmp_path: Path, tokens: Tokens
) -> None:
    """``http://edge/console`` as the base URL: the console answers every path under it with its
    page (200, text/html). Before, the subscriber read that as a stream with no frame, and
    reconnected at once, forever (hundreds of requests a second, no backoff)."""
    (tmp_path / "index.html").write_text("<html>the console</html>")
    with running_edge(settings, log_dir, {"LEDGERFLOW_CONSOLE_DIR": str(tmp_path)}) as (_, base):

        async def follow() -> Subscriber:
            async with Subscriber(base + "/console", token=tokens(roles="subscriber")) as sub:
                with pytest.raises(InfrastructureError) as caught:
                    await asyncio.wait_for(anext(sub.events()), 10)
            assert str(caught.value) == (
                f"{base}/console/v1/streams/tenant answered 200 with text/html; charset=utf-8, not an "
                "event stream (text/event-stream): is that the edge's address?"
            )
            return sub

        assert asyncio.run(follow()).connections == 1


def test_a_stream_that_ends_without_a_word_is_reconnected_with_backoff() -> None:
    """A server (a proxy in front of the edge, say) that answers 200 with a stream's opening and
    then ends the response cleanly, with no control frame saying why. Before, the subscriber
    reconnected at once every time: thousands of requests in three seconds. Now it backs off
    as after a dropped connection (0.2 s, 0.4 s …), resuming from the checkpoint it was given."""
    asked: list[str] = []
    opening = b"retry: 2000\n\nid: d0:4.e0:9\n\n"
    answer = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        + b"%x\r\n" % len(opening)
        + opening
        + b"\r\n0\r\n\r\n"
    )

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        asked.append(head.decode())
        writer.write(answer)
        await writer.drain()
        writer.close()

    async def follow() -> Subscriber:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server, Subscriber(f"http://127.0.0.1:{port}", token="a.b.c") as sub:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(anext(sub.events()), 3)
        return sub

    sub = asyncio.run(follow())
    assert 3 <= sub.connections <= 6, sub.connections  # 0.2 + 0.4 + 0.8 + 1.6 s of backoff
    assert sub.last_event_id == "d0:4.e0:9"
    assert all("last-event-id: d0:4.e0:9" in head.lower() for head in asked[1:])


def test_the_same_event_and_the_same_step_key_sent_twice_at_once_are_one_publication(
    settings: Settings, edge: str, tokens: Tokens
) -> None:
    """Two sends of one event id (or one Idempotency-Key) at once: the second finds the first
    still publishing and the edge answers 409 with Retry-After ("retry shortly"). Before, the
    client raised that as a ValidationError; it now retries, and answers the first's position
    (``duplicate``) or event id. The log holds each turn once."""
    conv = f"c-{uuid.uuid4().hex[:8]}"
    token = tokens()

    async def go() -> None:
        async with AsyncProducer(edge, token=token) as one, AsyncProducer(edge, token=token) as two:
            for n in range(10):
                event = await one.event(MessageSubmitted(f"t{n}", "user", "hi", "m"), subject=conv)
                a, b = await asyncio.gather(one.publish_events([event]), two.publish_events([event]))
                assert (a[0].partition, a[0].offset) == (b[0].partition, b[0].offset)
                assert sorted([a[0].duplicate, b[0].duplicate]) == [False, True]
        async with Decisions(edge, token=token) as one, Decisions(edge, token=token) as two:
            for n in range(5):
                key = f"k-{uuid.uuid4().hex}"
                first, second = await asyncio.gather(
                    one.step(conv, f"step {n}", wait_s=0, idempotency_key=key),
                    two.step(conv, f"step {n}", wait_s=0, idempotency_key=key),
                )
                assert first.event_id == second.event_id

    asyncio.run(go())
    contents = [e.payload.content for e in events_on_log(settings) if e.subject == conv]  # type: ignore[union-attr]
    assert sorted(contents) == sorted(["hi"] * 10 + [f"step {n}" for n in range(5)])


def test_an_expired_token_with_no_other_to_take_is_an_auth_error_not_a_reconnect_loop(
    settings: Settings, log_dir: Path, tokens: Tokens
) -> None:
    """The edge takes a token for its leeway (30 s) past ``exp``, but a stream on it ends at once
    with ``expired``. Before, a subscriber whose token source had no other (a fixed token, or a
    callback still returning the expired one) reconnected at once every time: about 1,350
    connections until the leeway ran out and a 401 ended it. Now a fixed token ends at its first
    ``expired``, a callback after three, each waited with backoff."""
    with running_edge(settings, log_dir, {"LEDGERFLOW_SSE_REAUTH_BEFORE_S": "1"}) as (_, base):

        async def follow(source: TokenSource) -> tuple[Subscriber, str]:
            async with Subscriber(base, token=source) as sub:
                with pytest.raises(AuthError) as caught:
                    await asyncio.wait_for(anext(sub.events()), 20)
            return sub, str(caught.value)

        fixed = tokens(roles="subscriber", ttl_seconds=3)
        sub, message = asyncio.run(follow(fixed))
        assert sub.connections == 1
        assert message == (
            "the stream's token expired and no other came (1 in a row): pass a callback that returns "
            "a fresh token, and last_event_id to resume"
        )
        stale = tokens(roles="subscriber", ttl_seconds=3)
        sub, message = asyncio.run(follow(lambda: stale))
        assert sub.connections == 3 and "(3 in a row)" in message


def test_a_line_that_never_ends_is_one_error_not_memory_without_end() -> None:
    """A server that sends a data line of 20 MB with no end, and holds the connection. Before,
    the subscriber buffered it whole and waited for more (about four bytes of memory per byte
    sent, without bound); now it refuses past 16 MiB, in one line."""
    head = b"id: e0:1\nevent: MessageSubmitted\ndata: "
    filler = b"x" * 65536

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        writer.write(b"%x\r\n" % len(head) + head + b"\r\n")
        for _ in range(320):  # 20 MiB
            writer.write(b"%x\r\n" % len(filler) + filler + b"\r\n")
            await writer.drain()
        await asyncio.sleep(60)

    async def follow() -> tuple[Subscriber, str]:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with Subscriber(f"http://127.0.0.1:{port}", token="a.b.c") as sub:
            with pytest.raises(InfrastructureError) as caught:
                await asyncio.wait_for(anext(sub.events()), 30)
        server.close()
        return sub, str(caught.value)

    sub, message = asyncio.run(follow())
    assert message == "the stream sent a line longer than 16,777,216 characters: not a frame of the edge's"
    assert sub.connections == 1 and sub.last_event_id is None
