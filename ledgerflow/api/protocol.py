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

The counter is ``ledgerflow_edge_limited_total{limit}``. There is no request left to answer in
either case, so nothing is sent: the connection is closed. While the app handles a request the
protocol sets no deadline: a body the app reads has its own (``problems.read_body``, 408).

``serve`` pins this class (``uvicorn.Config(http=...)``) rather than uvicorn's ``"auto"``, which
would switch to httptools whenever that package is installed and silently drop the deadlines.
"""

from __future__ import annotations

import asyncio
from typing import Literal

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from ledgerflow.api.limits import DEFAULT_BODY_TIMEOUT_S, DEFAULT_HEADER_TIMEOUT_S, LIMITED, EdgeLimits

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
    of an answered body past its deadline (see the module doc)."""

    head_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S

    _deadline: asyncio.TimerHandle | None = None
    _deadline_for: Deadline | None = None

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
        super().connection_lost(exc)

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
        {"head_timeout_s": limits.header_timeout_s, "body_timeout_s": limits.body_timeout_s},
    )
