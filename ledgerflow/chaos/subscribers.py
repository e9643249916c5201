"""SSE subscribers that follow the conversations they drive, through edges that get killed.

Each subscriber opens ``/v1/conversation/stream`` for a fresh conversation, waits for the
stream's first checkpoint, then publishes the conversation through the edges, and keeps every
data frame it is served. When its connection drops or the edge ends the stream, it resumes
with its last cursor (``Last-Event-ID``) on the other edge. The checks then ask: was every
record of the conversation at or below the final cursor served exactly once?
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from ledgerflow.chaos.load import TENANTS, Load
from ledgerflow.chaos.services import Service
from ledgerflow.sse_client import follow

READ_TIMEOUT_S = 60.0  # several heartbeats: a stream silent this long hangs
DONE_QUIET_S = 3.0
DRAIN_S = 90.0
ENDING = ("shutdown", "unavailable", "overflow", "expired")


@dataclass
class Watch:
    """One subscriber's view of one conversation."""

    tenant: str
    conversation: str
    seen: Counter[str] = field(default_factory=Counter)  # event id → times served
    cursor: str | None = None
    edge: str | None = None  # the base URL serving it now (None while reconnecting)
    resumes: int = 0
    opened: asyncio.Event = field(default_factory=asyncio.Event)
    last_frame: float = field(default_factory=time.monotonic)
    turns: int = 0
    decisions: int = 0
    closed: bool = False
    problems: list[str] = field(default_factory=list)

    def settled(self) -> bool:
        quiet = time.monotonic() - self.last_frame > DONE_QUIET_S
        return self.closed and self.decisions >= self.turns and quiet

    def take(self, event: str, data: str) -> None:
        body = json.loads(data)
        self.seen[body["event_id"]] += 1
        self.last_frame = time.monotonic()
        if event == "MessageSubmitted":
            self.turns += 1
        elif event == "PolicyDecision":
            self.decisions += 1
        elif event == "ConversationClosed":
            self.closed = True


class Subscribers:
    def __init__(self, load: Load, count: int) -> None:
        self.load = load
        self.count = count
        self.watches: list[Watch] = []
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=READ_TIMEOUT_S))
        self.tokens = {t: load.env.token(t, "subscriber", sub="watcher") for t in TENANTS}

    def open_on(self, base_url: str) -> int:
        """How many subscribers an edge serves right now."""
        return sum(1 for w in self.watches if w.edge == base_url)

    @property
    def resumes(self) -> int:
        return sum(w.resumes for w in self.watches)

    @property
    def frames(self) -> int:
        return sum(sum(w.seen.values()) for w in self.watches)

    def problems(self) -> list[str]:
        return [f"SSE {w.conversation}: {p}" for w in self.watches for p in w.problems]

    async def close(self) -> None:
        await self.http.aclose()

    def edges(self, first: int) -> list[Service]:
        edges = self.load.env.edges
        return [edges[(first + i) % len(edges)] for i in range(len(edges))]

    async def run(self, index: int) -> None:
        """Subscriber ``index``: one conversation after another until the load stops."""
        while not self.load.stopping.is_set():
            tenant = self.load.rng.choice(TENANTS)
            watch = Watch(tenant, self.load.conversation_id("w"))
            self.watches.append(watch)
            stop = asyncio.Event()
            following = asyncio.create_task(self.follow(watch, index, stop))
            try:
                await asyncio.wait_for(watch.opened.wait(), 120)
            except TimeoutError:
                watch.problems.append("the stream never opened within 120 s")
            for event in self.load.events(tenant, watch.conversation):
                await self.load.post_event(event)
            deadline = time.monotonic() + DRAIN_S
            while not watch.settled() and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            stop.set()
            await following

    async def follow(self, watch: Watch, index: int, stop: asyncio.Event) -> None:
        url = f"/v1/conversation/stream?conversation_id={watch.conversation}"
        attempt = 0
        while not stop.is_set():
            edge = self.edges(index + attempt)[0]
            attempt += 1
            if not edge.alive():
                await asyncio.sleep(0.2)
                continue
            if watch.cursor is not None:
                watch.resumes += 1
            reading = asyncio.create_task(self.read(watch, f"{edge.http}{url}", edge))
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            watch.edge = None
            if not reading.done():
                reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
                break
            stopping.cancel()
            await asyncio.sleep(0.2)

    async def read(self, watch: Watch, url: str, edge: Service) -> None:
        """One connection: frames until it ends; what ended it is judged."""
        epoch = edge.epoch
        try:
            async for frame in follow(
                self.http, url, self.tokens[watch.tenant], watch.cursor, checkpoints=True
            ):
                watch.edge = edge.http
                if frame.id is not None:
                    watch.cursor = frame.id
                if frame.event == "":
                    watch.opened.set()
                elif frame.event == "reset":
                    watch.problems.append(f"the stream did not resume where it asked: {frame.data}")
                elif frame.event in ENDING:
                    return
                elif frame.id is not None:
                    watch.take(frame.event, frame.data)
        except httpx.HTTPStatusError as exc:
            resp = exc.response
            if resp.status_code not in (503, 429) or not resp.headers.get("retry-after"):
                watch.problems.append(f"HTTP {resp.status_code} from {edge.name}: {resp.text[:200]}")
            await asyncio.sleep(1.0)
        except httpx.ConnectError:
            pass  # nothing listens there (the edge is down or being killed): the other edge next
        except httpx.ReadTimeout:
            watch.problems.append(f"{edge.name} sent nothing for {READ_TIMEOUT_S:.0f} s (a hang)")
        except httpx.TransportError as exc:
            if edge.epoch == epoch and edge.alive():
                watch.problems.append(f"{edge.name} dropped the stream: {exc!r}")
