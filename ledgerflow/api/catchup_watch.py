"""When a stream's catch-up sends a heartbeat, and when it gives up: pure, on a monotonic clock.

A catch-up reads the log from the subscriber's cursor with its own consumer. A broker that
stops answering (paused, cut off) does not fail those reads: each returns nothing after its
timeout, forever. Without a bound the stream would hold its catch-up slot, silent, until the
client's token expired. So:

- a stream that has written nothing for ``heartbeat_s`` sends a heartbeat, as a live stream
  does (the client and the proxies in between see the connection is alive); this includes
  the wait for a catch-up slot and a catch-up scanning other tenants' records;
- a catch-up that holds a slot and has scanned no further for ``stall_s`` (the edge's
  default: ``hub.CATCH_UP_STALL_S``) gives up: the stream ends with ``event: unavailable`` and a
  ``retry:`` hint, the slot is freed, and the client reconnects with its last event id.
  Waiting for a slot is not a stall (the slots' holders are bounded by this rule).

Progress is measured in offsets scanned, not frames sent: a tenant stream catching up over
other tenants' records sends nothing for a while and is still progressing.

The bound measures time waiting on Kafka, not time blocked writing to a slow client: a heartbeat
write that blocks moves the bound by as long as it blocked (``after_heartbeat``; a data write
already counts as progress when it returns, ``after_batch``), and a read that has come back is
taken before anything else is decided (``next_step(..., answered=True)``): it may be the very
progress, or the end of the catch-up, the bound is waiting for.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = [
    "CatchUpClock",
    "GiveUp",
    "Heartbeat",
    "Step",
    "Wait",
    "admitted",
    "after_batch",
    "after_heartbeat",
    "next_step",
    "started",
]


@dataclass(frozen=True, slots=True)
class CatchUpClock:
    """What the decision needs to remember (monotonic seconds)."""

    wrote_at: float  # the stream last wrote a frame
    progressed_at: float | None = None  # the catch-up took its slot or scanned further; None: no slot yet


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to do before ``seconds`` (or the next batch, whichever comes first)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Send ``event: heartbeat`` now."""


@dataclass(frozen=True, slots=True)
class GiveUp:
    """End the stream now with ``event: unavailable``; ``reason`` is one line for the client."""

    reason: str


Step = Wait | Heartbeat | GiveUp


def started(now: float) -> CatchUpClock:
    """The clock of a catch-up that has just written its opening frames and waits for a slot."""
    return CatchUpClock(wrote_at=now)


def admitted(clock: CatchUpClock, now: float) -> CatchUpClock:
    """The catch-up holds a slot: the stall bound runs from here."""
    return replace(clock, progressed_at=now) if clock.progressed_at is None else clock


def after_batch(
    clock: CatchUpClock, now: float, *, before: int, scanned_to: int, wrote: bool
) -> CatchUpClock:
    """A batch arrived: its partition had been scanned to ``before``, now to ``scanned_to``.

    An empty read (``scanned_to == before``) is no progress: that is what a silent broker gives.
    """
    clock = admitted(clock, now)
    if scanned_to > before:
        clock = replace(clock, progressed_at=now)
    if wrote:
        clock = replace(clock, wrote_at=now)
    return clock


def after_heartbeat(clock: CatchUpClock, began: float, now: float) -> CatchUpClock:
    """A heartbeat was written from ``began`` until ``now`` (the client took it then): that time
    is not counted against Kafka, so the stall bound moves by it."""
    blocked = max(now - began, 0.0)
    progressed_at = None if clock.progressed_at is None else clock.progressed_at + blocked
    return replace(clock, wrote_at=now, progressed_at=progressed_at)


def next_step(
    clock: CatchUpClock, now: float, heartbeat_s: float, stall_s: float, *, answered: bool = False
) -> Step:
    """Give up, send a heartbeat, or wait (for how long at most) — in that order of precedence,
    after ``answered`` (the read in flight has come back): then ``Wait(0)``, take its batch first."""
    if answered:
        return Wait(0.0)
    stalled_at = None if clock.progressed_at is None else clock.progressed_at + stall_s
    if stalled_at is not None and now >= stalled_at:
        return GiveUp(
            f"the catch-up read nothing from Kafka for {stall_s:g} s: reconnect with your last event id"
        )
    heartbeat_at = clock.wrote_at + heartbeat_s
    if now >= heartbeat_at:
        return Heartbeat()
    return Wait((heartbeat_at if stalled_at is None else min(heartbeat_at, stalled_at)) - now)
