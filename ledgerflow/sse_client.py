"""Small SSE clients (httpx-sse's WHATWG parser), for the demo, tests and benchmarks.

``follow`` runs over httpx; ``RawStream`` speaks HTTP/1.1 on a bare asyncio socket, for
benchmarks with a thousand subscribers in one process and for tests that need control
over the socket (a tiny receive buffer to play a slow client).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field

import httpx
from httpx_sse import aconnect_sse
from httpx_sse._decoders import SSEDecoder  # the field parser (see ``parse``)

from ledgerflow.errors import InfrastructureError


@dataclass(frozen=True, slots=True)
class SseEvent:
    event: str
    data: str
    id: str | None  # None for control frames (they carry no id)
    retry: int | None = None  # the frame's ``retry:`` (reconnection delay, ms), if any


MAX_LINE_CHARS = 16 * 1024 * 1024
"""The longest line ``follow`` takes. The edge's longest is a data frame of one record (bodies are
at most 256 KiB, Kafka's records 1 MB by default; JSON escapes grow them at most sixfold): a
longer one, or one that never ends, is a server gone wrong, not something to buffer without end."""
_EOL = re.compile(r"\r\n|\r|\n")


class FrameTooLarge(InfrastructureError):
    """A line of the stream longer than ``MAX_LINE_CHARS``."""


@dataclass
class LineSplitter:
    """Pure: text chunks in, complete lines out, split at CRLF, LF or CR (WHATWG HTML §9.2.5), a CRLF
    split between chunks included. Holds at most ``limit`` characters of an unfinished line: past
    that, FrameTooLarge. What is left at the end of the stream is no line (the spec discards it)."""

    limit: int = MAX_LINE_CHARS
    _parts: list[str] = field(default_factory=list)
    _size: int = 0
    _after_cr: bool = False

    def feed(self, chunk: str) -> list[str]:
        if not chunk:
            return []  # keeps a pending CR's state
        if self._after_cr and chunk.startswith("\n"):
            chunk = chunk[1:]  # the LF of a CRLF whose CR ended the previous chunk
        self._after_cr = chunk.endswith("\r")
        lines, start = [], 0
        for eol in _EOL.finditer(chunk):
            self._take(chunk[start : eol.start()])
            lines.append("".join(self._parts))
            self._parts, self._size = [], 0
            start = eol.end()
        self._take(chunk[start:])
        return lines

    def _take(self, text: str) -> None:
        self._size += len(text)
        if self._size > self.limit:
            raise FrameTooLarge(
                f"the stream sent a line longer than {self.limit:,} characters: not a frame of the edge's"
            )
        if text:
            self._parts.append(text)


async def bounded_lines(chunks: AsyncIterator[str], limit: int = MAX_LINE_CHARS) -> AsyncGenerator[str, None]:
    """The lines of a text stream (``LineSplitter``)."""
    splitter = LineSplitter(limit)
    async for chunk in chunks:
        for line in splitter.feed(chunk):
            yield line


async def parse(lines: AsyncIterator[str], *, checkpoints: bool = False) -> AsyncIterator[SseEvent]:
    """Events of a stream of lines, parsed by httpx-sse's WHATWG decoder, one block at a time.

    Blocks without data (a bare ``retry:``) yield nothing, except, with ``checkpoints``, an
    id-only block: ``SseEvent("", "", id)``, whose id an ``EventSource`` would adopt as its
    Last-Event-ID without dispatching an event. Unlike an ``EventSource``, a block's id is
    its own (``None`` when it has none, as control frames): the decoder is fresh per block,
    so the last id is not carried over.
    """
    decoder = SSEDecoder()
    async for line in lines:
        frame = decoder.decode(line)
        if line == "":
            decoder = SSEDecoder()
        if frame is None:
            continue
        ident = frame.id or None
        if frame.data:
            yield SseEvent(frame.event, frame.data, ident, frame.retry)
        elif checkpoints and ident is not None:
            yield SseEvent("", "", ident)


class NotAnEventStream(InfrastructureError):
    """A 200 answer that is not ``text/event-stream``: the address is not an SSE endpoint (a wrong
    base URL, e.g. one the console answers with its page, or a proxy's page). Reading it as a
    stream would find no frame and reconnect forever."""


def check_event_stream(url: str, content_type: str) -> None:
    """Raise NotAnEventStream unless ``content_type`` is ``text/event-stream`` (parameters aside)."""
    if content_type.partition(";")[0].strip().lower() != "text/event-stream":
        raise NotAnEventStream(
            f"{url} answered 200 with {content_type[:60] or 'no content type'}, not an event stream "
            "(text/event-stream): is that the edge's address?"
        )


async def follow(
    client: httpx.AsyncClient,
    url: str,
    token: str,
    last_event_id: str | None = None,
    *,
    checkpoints: bool = False,
) -> AsyncGenerator[SseEvent, None]:
    """Frames of one SSE connection (raises httpx.HTTPStatusError on a non-200 answer,
    NotAnEventStream on a 200 that is not an event stream, FrameTooLarge on a line longer than
    ``MAX_LINE_CHARS``)."""
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    timeout = httpx.Timeout(10.0, read=None)
    async with aconnect_sse(client, "GET", url, headers=headers, timeout=timeout) as source:
        resp = source.response
        if resp.status_code != 200:
            await resp.aread()
            resp.raise_for_status()
        check_event_stream(url, resp.headers.get("content-type", ""))
        async with contextlib.aclosing(bounded_lines(resp.aiter_text())) as lines:
            async for frame in parse(lines, checkpoints=checkpoints):
                yield frame


class SseHttpError(Exception):
    """The server answered a stream request with a status other than 200."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"HTTP {status}: {body[:300]!r}")
        self.status = status
        self.body = body


class RawStream:
    """One SSE connection on a bare socket: ``await open()``, ``async for`` events, ``close()``."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        token: str,
        last_event_id: str | None = None,
        *,
        rcvbuf: int | None = None,
        buffer_limit: int = 65536,
        checkpoints: bool = False,
    ) -> None:
        self.host, self.port, self.path = host, port, path
        self._token, self._last_event_id = token, last_event_id
        self._rcvbuf, self._limit, self._checkpoints = rcvbuf, buffer_limit, checkpoints
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def open(self) -> RawStream:
        """Connect, send the request and read the status and headers (SseHttpError if not 200)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if self._rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.get_running_loop().sock_connect(sock, (self.host, self.port))
        except OSError:
            sock.close()
            raise
        self._reader, self._writer = await asyncio.open_connection(sock=sock, limit=self._limit)
        head = [
            f"GET {self.path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Authorization: Bearer {self._token}",
            "Accept: text/event-stream",
        ]
        if self._last_event_id:
            head.append(f"Last-Event-ID: {self._last_event_id}")
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        status_line = await self._reader.readline()
        status = int(status_line.split()[1])
        headers = {}
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status != 200:
            body = await self._reader.read(65536)
            self.close()
            raise SseHttpError(status, body)
        if headers.get("transfer-encoding", "").lower() != "chunked":
            self.close()
            raise SseHttpError(status, b"expected a chunked event stream")
        return self

    async def _lines(self) -> AsyncIterator[str]:
        assert self._reader is not None
        pending = b""
        while True:
            size_line = await self._reader.readline()
            if not size_line:
                return  # connection closed
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                return  # end of the response
            pending += await self._reader.readexactly(size)
            await self._reader.readexactly(2)
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode()

    def __aiter__(self) -> AsyncIterator[SseEvent]:
        return parse(self._lines(), checkpoints=self._checkpoints)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
