"""Publishing events to Kafka through a broker outage: ``ledgerflow produce``'s delivery loop.

A user's producer should ride out a short outage, not exit at the first refused connection
(nor, worse, report events published that were lost: aiokafka fails a batch it could not
deliver through its future, which nobody read). Sequence:

1. Start a producer (acks=all, idempotent). Send events in order, keeping each one's delivery
   future; an event counts as published when its future says the broker acknowledged it.
2. A fault — the producer cannot start, a send or a delivery fails, or nothing is acknowledged
   for ``STALL_S`` while events wait — starts an outage: one line to stderr naming it and how
   long it is retried. The producer is dropped; every event not acknowledged goes back to the
   front of the queue, in order; after a capped exponential wait (``ledgerflow.retry``) a new
   producer starts and sends them again, then the rest.
3. The first acknowledgement after an outage prints one line (how long it lasted) and the run
   goes on. An outage longer than ``retry_s`` (nothing acknowledged for that long while events
   wait) ends the run: ``InfrastructureError``, one line, exit 1.

An event sent again may have been written already (acknowledged after the producer was
dropped): at worst a duplicate delivery of the same ``event_id``, which the agents decide once
(docs/reliability.md). ``Outage`` is the pure part: when to say what, wait how long, give up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.errors import InfrastructureError
from ledgerflow.retry import delay
from ledgerflow.topics import CONVERSATION_EVENTS

__all__ = ["DEFAULT_RETRY_S", "RETRY_VARIABLE", "Outage", "Sent", "deliver", "take_acknowledged"]

RETRY_VARIABLE = "LEDGERFLOW_PRODUCE_RETRY_S"
DEFAULT_RETRY_S = 60.0
FIRST_WAIT_S, MAX_WAIT_S = 0.5, 5.0
STALL_S = 5.0  # nothing acknowledged for this long while events wait: the broker is gone
REQUEST_TIMEOUT_MS = 10_000  # a send blocked on a full batch fails after this (aiokafka: 40 s)
STOP_S = 5.0  # a dropped producer gets this long to close
MAX_IN_FLIGHT = 10_000
FAULTS = (KafkaError, OSError, asyncio.TimeoutError)


class Stalled(Exception):
    """Nothing was acknowledged for ``STALL_S`` while events waited (aiokafka retries a known
    leader silently, for ever)."""


@dataclass(slots=True)
class Outage:
    """Pure: the state of the current outage, fed with the clock's readings.

    ``failed(now, what)``: a fault; returns the seconds to wait before the next try, or None
    when the outage has lasted ``retry_s`` (give up). ``say`` is set to the line to print on
    the first fault of an outage. ``acknowledged(now)``: an event got through; returns the
    outage's length when this ends one, else None.
    """

    retry_s: float
    bootstrap: str
    since: float | None = None
    tries: int = 0
    say: str | None = None

    def failed(self, now: float, what: str, began: float | None = None) -> float | None:
        """``began``: when the fault started if before ``now`` (the oldest unacknowledged send)."""
        self.say = None
        if self.since is None:
            self.since = now if began is None else min(began, now)
            self.tries = 0
            self.say = (
                f"produce: Kafka at {self.bootstrap} does not answer ({what}); retrying for up to "
                f"{self.retry_s:g} s (--retry-for, {RETRY_VARIABLE})"
            )
        self.tries += 1
        left = self.since + self.retry_s - now
        if left <= 0:
            return None
        return min(delay(self.tries, FIRST_WAIT_S, MAX_WAIT_S), left)

    def acknowledged(self, now: float) -> float | None:
        if self.since is None:
            return None
        lasted, self.since, self.tries = now - self.since, None, 0
        return lasted

    def give_up(self, what: str, published: int) -> InfrastructureError:
        return InfrastructureError(
            f"no Kafka broker at {self.bootstrap} acknowledged an event for {self.retry_s:g} s ({what}); "
            f"{published} event(s) were published before it, the rest were not: start it "
            f"(`ledgerflow stack status`) and run produce again, or allow longer with --retry-for"
        )


@dataclass(slots=True)
class Sent:
    """One event handed to the producer: its delivery future, and when (``clock``) it was sent."""

    event: Event
    future: asyncio.Future[object]
    at: float


def _retrieved(fut: asyncio.Future[object]) -> None:
    """Read a failed future's exception: a dropped producer's failures are not news
    ("Future exception was never retrieved" on stderr)."""
    if not fut.cancelled():
        fut.exception()


async def deliver(
    settings: Settings,
    events: Iterator[Event],
    *,
    rate: float,
    retry_s: float,
    say: Callable[[str], None],
    on_sent: Callable[[int], None] = lambda _n: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[int, int]:
    """Steps 1-3: publish ``events`` to ``conversation.events`` keyed by conversation (``rate``
    per second, 0 = as fast as possible). Returns (events published, events sent again)."""
    topic = settings.topic(CONVERSATION_EVENTS)
    outage = Outage(retry_s, settings.kafka_bootstrap)
    again: deque[Event] = deque()  # not acknowledged by a dropped producer: sent first
    published = resent = 0
    while True:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        in_flight: deque[Sent] = deque()
        current: Event | None = None
        began, paced, backoff = clock(), 0, 0.0
        try:
            await producer.start()
            while True:
                acked, fault = take_acknowledged(in_flight)
                if acked:
                    if (lasted := outage.acknowledged(clock())) is not None:
                        say(f"produce: Kafka is back after {lasted:.1f} s; going on")
                    published += acked
                    on_sent(published)
                if fault is not None:
                    raise fault  # the failed send stays in ``in_flight``: sent again below
                if in_flight and clock() - in_flight[0].at > STALL_S:
                    raise Stalled(f"nothing acknowledged for {clock() - in_flight[0].at:.0f} s")
                if len(in_flight) >= MAX_IN_FLIGHT:
                    await asyncio.wait([in_flight[0].future], timeout=1.0)
                    continue
                if again:
                    current, fresh = again.popleft(), False
                else:
                    current, fresh = next(events, None), True
                if current is None:
                    if not in_flight:
                        return published, resent
                    await asyncio.wait([in_flight[0].future], timeout=1.0)
                    continue
                if fresh and rate > 0:
                    paced += 1
                    if (pause := began + paced / rate - clock()) > 0:
                        await sleep(pause)
                future = await producer.send(topic, codec.encode(current), key=current.subject.encode())
                future.add_done_callback(_retrieved)
                in_flight.append(Sent(current, future, clock()))
                current = None
        except (*FAULTS, Stalled) as exc:
            what = fault_text(exc)
            unacked = [s for s in in_flight if not (s.future.done() and _ok(s.future))]
            published += len(in_flight) - len(unacked)  # acknowledged, but behind a failed one
            if len(in_flight) != len(unacked):
                on_sent(published)
            back = [s.event for s in unacked] + ([current] if current is not None else [])
            resent += len(back)
            again.extendleft(reversed(back))
            now = clock()
            wait = outage.failed(now, what, min((s.at for s in unacked), default=None))
            if outage.say is not None:
                say(outage.say)
            if wait is None:
                raise outage.give_up(what, published) from None
            backoff = wait
        finally:
            with contextlib.suppress(*FAULTS):
                await asyncio.wait_for(producer.stop(), STOP_S)
        await sleep(backoff)


def take_acknowledged(in_flight: deque[Sent]) -> tuple[int, BaseException | None]:
    """Pop the sends at the front of ``in_flight`` the broker acknowledged, in order; return how
    many, and the fault of the first one whose delivery failed (None if none did). That one stays
    at the front, with every send behind it, so the caller sends it again: popped before its
    failure was read, it was neither counted nor sent again — lost."""
    taken = 0
    while in_flight and in_flight[0].future.done():
        future = in_flight[0].future
        fault = KafkaError("the delivery was cancelled") if future.cancelled() else future.exception()
        if fault is not None:
            return taken, fault
        in_flight.popleft()
        taken += 1
    return taken, None


def fault_text(exc: BaseException) -> str:
    """Pure: ``Type: message`` once (aiokafka's messages start with their type's name already)."""
    name, text = type(exc).__name__, " ".join(str(exc).split())
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


def _ok(fut: asyncio.Future[object]) -> bool:
    return not fut.cancelled() and fut.exception() is None
