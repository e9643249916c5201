"""ledgerflow.client where the way to the edge misbehaves: a base URL that answers a page, and a
server that ends streams without a word."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from ledgerflow.client import Subscriber
from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
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
