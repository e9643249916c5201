"""The edge's HTTP/1.1 protocol (api/protocol.py): what a client owes, and the deadlines on it,
driven through an in-memory transport (no sockets)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import h11
import uvicorn
from uvicorn.server import ServerState

from ledgerflow.api.limits import LIMITED, EdgeLimits
from ledgerflow.api.protocol import EdgeProtocol, edge_protocol, owed

HEAD = b"GET /x HTTP/1.1\r\nHost: edge\r\n\r\n"
POST_HEAD = b"POST /x HTTP/1.1\r\nHost: edge\r\nContent-Length: 10\r\n\r\n"


async def answer_without_reading(scope: dict, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
    """An app that answers 200 at once and never reads the body (as a 401 or a 405 does)."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


class MemoryTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.protocol: asyncio.Protocol | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.protocol is not None:
                asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def abort(self) -> None:
        self.aborted = True
        self.close()

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8700), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def connect(
    head_s: float = 0.2, body_s: float = 0.2, keep_alive_s: float = 5, write_s: float = 30
) -> tuple[EdgeProtocol, MemoryTransport]:
    cls = edge_protocol(EdgeLimits(header_timeout_s=head_s, body_timeout_s=body_s, write_timeout_s=write_s))
    config = uvicorn.Config(
        answer_without_reading, timeout_keep_alive=keep_alive_s, http=cls, log_level="warning"
    )
    protocol = cls(config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop())
    transport = MemoryTransport()
    transport.protocol = protocol
    protocol.connection_made(transport)
    return protocol, transport


def counted(limit: str) -> float:
    return LIMITED.labels(limit)._value.get()


def test_owed_follows_the_client_through_a_request() -> None:
    conn = h11.Connection(h11.SERVER)
    assert owed(conn) == "idle"
    conn.receive_data(b"GET /x HTTP/1.1\r\nHo")
    assert conn.next_event() is h11.NEED_DATA
    assert owed(conn) == "head"
    conn.receive_data(b"st: edge\r\nContent-Length: 4\r\n\r\nab")
    assert isinstance(conn.next_event(), h11.Request)
    assert owed(conn) == "handling"  # with the app, which may read the body itself
    conn.send(h11.Response(status_code=200, headers=[("Content-Length", "0")]))
    conn.send(h11.EndOfMessage())
    assert owed(conn) == "body"  # answered; the rest of the body is only drained
    conn.receive_data(b"cd")
    assert isinstance(conn.next_event(), h11.Data)
    assert isinstance(conn.next_event(), h11.EndOfMessage)
    conn.start_next_cycle()
    assert owed(conn) == "idle"


def test_the_deadlines_come_from_the_edge_limits() -> None:
    cls = edge_protocol(EdgeLimits(header_timeout_s=3, body_timeout_s=4, write_timeout_s=5))
    assert issubclass(cls, EdgeProtocol)
    assert (cls.head_timeout_s, cls.body_timeout_s, cls.write_timeout_s) == (3, 4, 5)


def test_a_connection_that_sends_nothing_is_closed_after_the_head_deadline() -> None:
    async def scenario() -> None:
        before = counted("header_timeout")
        _, transport = connect()
        await asyncio.sleep(0.4)
        assert transport.closed and transport.written == b""
        assert counted("header_timeout") == before + 1

    asyncio.run(scenario())


def test_a_head_trickling_in_is_closed_at_its_deadline_whatever_arrives_meanwhile() -> None:
    async def scenario() -> None:
        protocol, transport = connect(head_s=0.3)
        protocol.data_received(b"GET /x HTTP/1.1\r\n")
        for _ in range(10):  # a header byte every 0.05 s: each one cancels uvicorn's keep-alive timer
            if transport.closed:
                break
            protocol.data_received(b"X")
            await asyncio.sleep(0.05)
        assert transport.closed and transport.written == b""

    asyncio.run(scenario())


def test_a_head_in_time_is_answered_and_the_connection_kept() -> None:
    async def scenario() -> None:
        protocol, transport = connect(head_s=0.5)
        protocol.data_received(HEAD[:10])
        await asyncio.sleep(0.05)
        protocol.data_received(HEAD[10:])
        await asyncio.sleep(0.7)  # past the head deadline: idle now, under the keep-alive (5 s)
        assert transport.written.startswith(b"HTTP/1.1 200") and not transport.closed
        protocol.data_received(HEAD)  # a second request on the same connection
        await asyncio.sleep(0.05)
        assert transport.written.count(b"HTTP/1.1 200") == 2 and not transport.closed

    asyncio.run(scenario())


def test_the_rest_of_an_answered_body_trickling_in_is_closed_at_the_body_deadline() -> None:
    async def scenario() -> None:
        before = counted("body_timeout")
        protocol, transport = connect(body_s=0.3)
        protocol.data_received(POST_HEAD + b"a")
        for _ in range(8):  # uvicorn reads and drops each byte; without the deadline this never ends
            await asyncio.sleep(0.1)
            if transport.closed:
                break
            protocol.data_received(b"b")
        assert transport.written.startswith(b"HTTP/1.1 200") and transport.closed
        assert counted("body_timeout") == before + 1

    asyncio.run(scenario())


def test_after_an_answered_body_ends_the_idle_connection_has_a_keep_alive_again() -> None:
    async def scenario() -> None:
        protocol, transport = connect(body_s=5, keep_alive_s=0.2)
        protocol.data_received(POST_HEAD + b"a")
        await asyncio.sleep(0.05)  # answered
        protocol.data_received(b"b" * 9)  # the body ends: uvicorn cancelled its keep-alive timer on it
        assert protocol.timeout_keep_alive_task is not None
        await asyncio.sleep(0.4)
        assert transport.closed

    asyncio.run(scenario())


def test_a_client_that_takes_nothing_past_the_write_deadline_is_aborted() -> None:
    """Writes paused (the client reads nothing) for ``write_timeout_s``: the connection is aborted
    (``close`` would wait for the buffer to drain, for ever) and a send blocked on it returns."""

    async def scenario() -> None:
        before = counted("write_timeout")
        protocol, transport = connect(write_s=0.3)
        protocol.data_received(HEAD)
        await asyncio.sleep(0.05)
        protocol.pause_writing()  # the transport's buffer went over its high-water mark
        await asyncio.sleep(0.2)
        assert not transport.aborted
        await asyncio.sleep(0.3)
        assert transport.aborted
        assert counted("write_timeout") == before + 1
        await asyncio.sleep(0)  # connection_lost: uvicorn wakes every send waiting for a drain
        assert not protocol.flow.write_paused

    asyncio.run(scenario())


def test_writes_that_resume_in_time_keep_the_connection() -> None:
    async def scenario() -> None:
        before = counted("write_timeout")
        protocol, transport = connect(write_s=0.3)
        protocol.data_received(HEAD)
        for _ in range(4):  # a slow reader: paused, then drained below the low-water mark, again
            protocol.pause_writing()
            await asyncio.sleep(0.2)
            protocol.resume_writing()
        await asyncio.sleep(0.4)
        assert not transport.aborted and not transport.closed
        assert counted("write_timeout") == before

    asyncio.run(scenario())
