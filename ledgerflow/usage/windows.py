"""Event-time tumbling windows of token usage per (tenant, model): a pure state machine.

``add`` feeds one usage fact, ``advance`` moves the watermark (for idle inputs); both
return the new state and the records to publish. No clock, no I/O (see docs/usage.md).

- Windows are ``[start, start + size)``, aligned to the Unix epoch.
- The watermark is *global to one state* (one input partition of the usage agent):
  ``max(event time seen) - lateness``, raised further by ``advance``, never lowered.
- A window closes when ``watermark >= window_end``: one ``WindowClosed`` (revision 0).
  Windows that saw no event emit nothing.
- An event whose window is already closed emits a ``WindowClosed`` with
  ``correction=True``, ``revision + 1`` and the window's new *full* totals — never a
  silent rewrite, and each record is self-contained (the latest revision wins).
- Closed windows are remembered for ``retention`` after their end (``window_end +
  retention > watermark``). An event for a window older than that emits ``LateUsage``,
  a delta (its own tokens only), because the window's totals are forgotten.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ledgerflow.errors import ValidationError
from ledgerflow.usage.estimate import estimate_tokens_from_len

MICROS_PER_SECOND = 1_000_000


@dataclass(frozen=True, slots=True)
class WindowConfig:
    """Window size, allowed lateness and closed-window retention, all in microseconds."""

    size_micros: int = 60 * MICROS_PER_SECOND
    lateness_micros: int = 10 * MICROS_PER_SECOND
    retention_micros: int = 3600 * MICROS_PER_SECOND

    def __post_init__(self) -> None:
        if self.size_micros <= 0:
            raise ValidationError(f"window size must be > 0 µs, got {self.size_micros}")
        if self.lateness_micros < 0 or self.retention_micros < 0:
            raise ValidationError(
                f"lateness ({self.lateness_micros} µs) and retention ({self.retention_micros} µs) "
                "must be >= 0"
            )


@dataclass(frozen=True, slots=True)
class WindowTotals:
    """``tokens`` includes ``estimated_tokens``, the part estimated from content length."""

    tokens: int = 0
    events: int = 0
    estimated_tokens: int = 0

    def plus(self, other: WindowTotals) -> WindowTotals:
        return WindowTotals(
            self.tokens + other.tokens,
            self.events + other.events,
            self.estimated_tokens + other.estimated_tokens,
        )


@dataclass(frozen=True, slots=True)
class ClosedWindow:
    totals: WindowTotals
    revision: int


@dataclass(frozen=True, slots=True)
class _WindowUsage:
    """A (tenant, model) window and token counts: what both emitted records carry."""

    tenant: str
    model: str
    window_start: int
    window_end: int
    tokens: int
    events: int
    estimated_tokens: int


@dataclass(frozen=True, slots=True)
class WindowClosed(_WindowUsage):
    """A window's full totals. ``revision`` 0 is the close; each correction adds one."""

    revision: int = 0
    correction: bool = False


@dataclass(frozen=True, slots=True)
class LateUsage(_WindowUsage):
    """Usage for a window past retention: a *delta* to add, not a window's totals."""


Emitted = WindowClosed | LateUsage
WindowKey = tuple[str, str, int]  # (tenant, model, window_start)


@dataclass(frozen=True, slots=True)
class UsageState:
    """Treat as immutable: ``add``/``advance`` return a new state and never mutate this one."""

    config: WindowConfig = field(default_factory=WindowConfig)
    watermark: int | None = None
    max_event_time: int | None = None
    open: Mapping[WindowKey, WindowTotals] = field(default_factory=dict)
    closed: Mapping[WindowKey, ClosedWindow] = field(default_factory=dict)
    next_close_at: int | None = None  # smallest window_end among open windows
    next_prune_at: int | None = None  # smallest window_end + retention among closed windows


def price(tokens: int | None, content_len: int) -> WindowTotals:
    """What one event adds to its window: its token count, or (``tokens=None``) the estimate from
    ``content_len`` (UTF-8 bytes), counted as estimated too."""
    if tokens is None:
        estimated = estimate_tokens_from_len(content_len)
        return WindowTotals(estimated, 1, estimated)
    return WindowTotals(tokens, 1, 0)


def window_bounds(config: WindowConfig, occurred_at_micros: int) -> tuple[int, int]:
    """``(start, end)`` of the window holding ``occurred_at_micros``; end is exclusive."""
    start = occurred_at_micros - occurred_at_micros % config.size_micros
    return start, start + config.size_micros


def add(
    state: UsageState,
    tenant: str,
    model: str,
    occurred_at_micros: int,
    tokens: int | None,
    content_len: int,
) -> tuple[UsageState, list[Emitted]]:
    """Count one event; ``tokens=None`` means estimate from ``content_len`` (UTF-8 bytes).

    1. Price the event (its token count, or the estimate).
    2. If its window is past retention, emit ``LateUsage`` (delta).
    3. If its window is closed, emit a correction with the new full totals.
    4. Otherwise add it to its open window, raise the watermark and close what is due.
    """
    if tokens is not None and tokens < 0:
        raise ValidationError(f"token count must be >= 0, got {tokens} for tenant {tenant!r} model {model!r}")
    delta = price(tokens, content_len)  # Step 1.
    config = state.config
    start, end = window_bounds(config, occurred_at_micros)
    key = (tenant, model, start)
    watermark = state.watermark
    if watermark is not None and end <= watermark:
        # Step 2.
        if end + config.retention_micros <= watermark:
            return state, [
                LateUsage(tenant, model, start, end, delta.tokens, delta.events, delta.estimated_tokens)
            ]
        # Step 3.
        previous = state.closed.get(key)
        totals = delta if previous is None else previous.totals.plus(delta)
        revision = 0 if previous is None else previous.revision + 1
        closed = dict(state.closed)
        closed[key] = ClosedWindow(totals, revision)
        prune_at = _min(state.next_prune_at, end + config.retention_micros)
        record = _closed_record(key, end, totals, revision, correction=True)
        return replace(state, closed=closed, next_prune_at=prune_at), [record]
    # Step 4.
    opened = dict(state.open)
    current = opened.get(key)
    opened[key] = delta if current is None else current.plus(delta)
    max_event_time = _max(state.max_event_time, occurred_at_micros)
    state = replace(
        state, open=opened, max_event_time=max_event_time, next_close_at=_min(state.next_close_at, end)
    )
    return _settle(state, max_event_time - config.lateness_micros)


def advance(state: UsageState, watermark_micros: int) -> tuple[UsageState, list[Emitted]]:
    """Raise the watermark to ``watermark_micros`` (a lower value is ignored); close what is due."""
    return _settle(state, watermark_micros)


def _settle(state: UsageState, candidate: int) -> tuple[UsageState, list[Emitted]]:
    if state.watermark is not None and candidate <= state.watermark:
        return state, []
    watermark = candidate
    emitted: list[Emitted] = []
    opened, closed = state.open, state.closed
    next_close_at, next_prune_at = state.next_close_at, state.next_prune_at
    size, retention = state.config.size_micros, state.config.retention_micros
    if next_close_at is not None and watermark >= next_close_at:
        due = sorted((key for key in opened if key[2] + size <= watermark), key=lambda k: (k[2], k[0], k[1]))
        opened = {key: totals for key, totals in opened.items() if key[2] + size > watermark}
        closed = dict(closed)
        for key in due:
            totals = state.open[key]
            closed[key] = ClosedWindow(totals, 0)
            emitted.append(_closed_record(key, key[2] + size, totals, 0, correction=False))
            next_prune_at = _min(next_prune_at, key[2] + size + retention)
        next_close_at = min((key[2] + size for key in opened), default=None)
    if next_prune_at is not None and watermark >= next_prune_at:
        closed = {key: kept for key, kept in closed.items() if key[2] + size + retention > watermark}
        next_prune_at = min((key[2] + size + retention for key in closed), default=None)
    new_state = replace(
        state,
        watermark=watermark,
        open=opened,
        closed=closed,
        next_close_at=next_close_at,
        next_prune_at=next_prune_at,
    )
    return new_state, emitted


def _closed_record(
    key: WindowKey, end: int, totals: WindowTotals, revision: int, *, correction: bool
) -> WindowClosed:
    tenant, model, start = key
    return WindowClosed(
        tenant, model, start, end, totals.tokens, totals.events, totals.estimated_tokens, revision, correction
    )


def _min(current: int | None, candidate: int) -> int:
    return candidate if current is None else min(current, candidate)


def _max(current: int | None, candidate: int) -> int:
    return candidate if current is None else max(current, candidate)


UNBOUNDED_RETENTION = 10**18
"""A re-fold's retention (µs, ~31,700 years): it forgets no window, so it emits no ``LateUsage``."""


def refold_config(config: WindowConfig) -> WindowConfig:
    """``config`` for a re-fold (see ``reconcile``): same size and lateness, nothing forgotten."""
    return replace(config, retention_micros=UNBOUNDED_RETENTION)


def reconcile(
    state: UsageState, written: Mapping[WindowKey, WindowClosed], config: WindowConfig | None = None
) -> tuple[UsageState, list[Emitted]]:
    """``state`` re-folded from the input log (under ``refold_config(config)``, its emitted records
    dropped, the turns a ``LateUsage`` already written counts left out), brought in line with the
    windows already written for it (``written``: the latest revision of each, from
    ``usage.windows``); ``config`` (default: the state's) is what the live fold goes on with.

    What the re-fold would emit depends on its watermark: event time only, under today's lateness.
    The records written depend on the writer's: raised by the wall clock too (``advance`` on an idle
    input), under the lateness it ran with. So one turn could be in a written window's totals (open
    window or correction) for one and a ``LateUsage`` delta for the other, and one revision number
    name other totals in each: writing what the re-fold emits, skipping ids already written, counted
    turns twice or lost them. Instead the re-fold forgets no window (so it makes no delta), and only
    its final per-window totals are compared with what is written:

    1. Each written window is closed at its written revision. If the re-fold counted otherwise
       (inputs whose correction a crash kept from the log, or a turn a delta counts as well), a
       correction at the next revision carries the full totals.
    2. A window the re-fold closed that nothing was written for is written now (revision 0).
    3. The watermark rises to the end of the latest written window (the writer's watermark had
       reached it); open windows that makes due are closed as ``advance`` closes them.
    4. Closed windows past ``config``'s retention are forgotten.

    So for every window, its latest written totals plus its written deltas are its turns' sum, and
    the state's closed windows carry the revisions written: whatever lateness the writer ran with.
    """
    config = config or state.config
    size, retention = config.size_micros, config.retention_micros
    emitted: list[Emitted] = []
    opened, refolded = dict(state.open), dict(state.closed)
    closed: dict[WindowKey, ClosedWindow] = {}
    for key, record in written.items():
        was = WindowTotals(record.tokens, record.events, record.estimated_tokens)
        counted = opened.pop(key, None) or (refolded.pop(key).totals if key in refolded else None)
        if counted is None or counted == was:
            closed[key] = ClosedWindow(was, record.revision)
            continue
        revision = record.revision + 1
        closed[key] = ClosedWindow(counted, revision)
        emitted.append(_closed_record(key, record.window_end, counted, revision, correction=True))
    for key, kept in refolded.items():  # closed by the re-fold, never written
        closed[key] = ClosedWindow(kept.totals, 0)
        emitted.append(_closed_record(key, key[2] + size, kept.totals, 0, correction=False))
    emitted.sort(key=lambda e: (e.window_start, e.tenant, e.model))
    state = replace(
        state,
        config=config,
        open=opened,
        closed=closed,
        next_close_at=min((key[2] + size for key in opened), default=None),
        next_prune_at=min((key[2] + size + retention for key in closed), default=None),
    )
    reached = max((record.window_end for record in written.values()), default=None)
    due: list[Emitted] = []
    if reached is not None:
        state, due = _settle(state, reached)
    return _forget(state), emitted + due


def _forget(state: UsageState) -> UsageState:
    """``state`` without the closed windows its watermark has taken past retention."""
    watermark, prune_at = state.watermark, state.next_prune_at
    if watermark is None or prune_at is None or watermark < prune_at:
        return state
    size, retention = state.config.size_micros, state.config.retention_micros
    closed = {key: kept for key, kept in state.closed.items() if key[2] + size + retention > watermark}
    return replace(
        state, closed=closed, next_prune_at=min((key[2] + size + retention for key in closed), default=None)
    )
