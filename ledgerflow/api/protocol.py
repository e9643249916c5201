"""The edge's HTTP/1.1 protocol: uvicorn's h11 protocol with deadlines on what a client owes.

uvicorn (0.54, h11) bounds only the idle time after a response (the keep-alive timer), and any
byte cancels that timer. So a client could hold a connection forever by sending nothing after
connecting, by sending ``GET / HTTP/1.1`` and then a header byte every few seconds (slowloris),
or by trickling the rest of a body the app answered without reading (``uvicorn`` reads and drops it
for as long as it comes, and once it ends the connection has no timer at all). Enough such
connections exhaust the edge's sockets. ``EdgeProtocol`` closes such a connection:

- a request head, on a new connection or once its first byte arrived: ``head_timeout_s``
  (``LEDGERFLOW_HEADER_TIMEOUT_S``) from the connection or that byte, counted as ``header_timeout``;
- the rest of a body the app answered without reading: ``body_timeout_s``
  (``LEDGERFLOW_BODY_TIMEOUT_S``) from the answer, counted as ``body_timeout``;
- nothing (idle between requests): uvicorn's keep-alive, which this class sets again after such a
  body ended (uvicorn cancelled it on the body's bytes and left the connection without a timer).

And one deadline on what the edge owes the client but cannot hand over: a connection whose writes
stay paused (the transport's buffer over its high-water mark, the kernel's socket buffers full: the
client takes nothing) for ``write_timeout_s`` (``LEDGERFLOW_WRITE_TIMEOUT_S``) is aborted, counted as
``write_timeout``. uvicorn's ``send`` waits for the buffer to drain with no bound, so an SSE stream
whose client stopped reading but kept its connection open never got past its next write: not to its
token's expiry, not to its end, holding its tenant's stream slot and its queued frames for ever. The
abort discards the buffer (``close`` would wait for it to drain, for ever too); uvicorn then sees the
connection lost, the blocked write returns and the app sees the disconnect, which ends the stream.

The counter is ``ledgerflow_edge_limited_total{limit}``. There is no request left to answer in
any case, so nothing is sent: the connection is closed. While the app handles a request the
protocol sets no deadline: a body the app reads has its own (``problems.read_body``, 408).

``serve`` pins this class (``uvicorn.Config(http=...)``) rather than uvicorn's ``"auto"``, which
would switch to httptools whenever that package is installed and silently drop the deadlines.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ledgerflow.api.limits import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_WRITE_TIMEOUT_S,
    LIMITED,
    EdgeLimits,
)

__all__ = ["EdgeProtocol", "Owed", "edge_protocol", "owed"]

Owed = Literal["head", "body", "idle", "handling"]
Deadline = Literal["head", "body"]


def owed(conn: h11.Connection) -> Owed:
    """What the edge waits for on ``conn``: the rest of a request head (some of it has arrived),
    the rest of a body it already answered, nothing (``idle`` between requests), or — while a
    request is with the app — ``handling``."""
    if conn.their_state is h11.IDLE:
        return "head" if conn.trailing_data[0] else "idle"
    if conn.their_state is h11.SEND_BODY and conn.our_state is h11.DONE:
        return "body"
    return "handling"


class EdgeProtocol(H11Protocol):
    """uvicorn's ``H11Protocol``, closing a connection whose client owes a request head or the rest
    of an answered body past its deadline, or takes nothing the edge writes for ``write_timeout_s``
    (see the module doc)."""

    head_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S

    _deadline: asyncio.TimerHandle | None = None
    _deadline_for: Deadline | None = None
    _write_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("head")  # a new connection owes its first request head

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._disarm_write()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_deadline is None:
            self._write_deadline = self.loop.call_later(self.write_timeout_s, self._write_expired)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._disarm_write()

    def _disarm_write(self) -> None:
        if self._write_deadline is not None:
            self._write_deadline.cancel()
        self._write_deadline = None

    def _write_expired(self) -> None:
        # Paused since the deadline was armed (resume_writing disarms it). Even a closing transport
        # is aborted: ``close`` waits for its buffer to drain, which this client never lets happen.
        self._write_deadline = None
        LIMITED.labels("write_timeout").inc()
        self.transport.abort()

    def _watch(self) -> None:
        if self.transport.is_closing():
            return
        now = owed(self.conn)
        if now == "head" or now == "body":
            self._arm(now)
            return
        self._disarm()
        if now == "idle" and self.timeout_keep_alive_task is None:
            # The body of an answered request ended: uvicorn's data_received cancelled the
            # keep-alive timer it set after the answer, and nothing sets it again.
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )

    def _arm(self, what: Deadline) -> None:
        """Start the deadline for ``what`` unless it already runs: it is not renewed by more bytes."""
        if self._deadline_for == what:
            return
        self._disarm()
        seconds = self.head_timeout_s if what == "head" else self.body_timeout_s
        self._deadline = self.loop.call_later(seconds, self._expired, what)
        self._deadline_for = what

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._deadline_for = None

    def _expired(self, what: Deadline) -> None:
        # Every change of what the client owes passes _watch, which disarms a deadline it ended.
        self._deadline = None
        self._deadline_for = None
        if self.transport.is_closing():
            return
        LIMITED.labels("header_timeout" if what == "head" else "body_timeout").inc()
        self.transport.close()


def edge_protocol(limits: EdgeLimits) -> type[EdgeProtocol]:
    """The protocol class for ``uvicorn.Config(http=...)`` with the deadlines of ``limits`` (uvicorn
    builds one protocol per connection from the class alone)."""
    return type(
        "EdgeProtocol",
        (EdgeProtocol,),
        {
            "head_timeout_s": limits.header_timeout_s,
            "body_timeout_s": limits.body_timeout_s,
            "write_timeout_s": limits.write_timeout_s,
        },
    )
