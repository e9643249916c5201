"""Every usage window that must have closed has its record in ``usage.windows`` (pure: no I/O).

The usage agent folds each input partition of ``conversation.events`` with the pure
``ledgerflow.usage.add`` and closes a window once its watermark (event time − lateness,
raised further by the wall clock) passes the window's end. The auditor re-folds each
partition by event time only: its watermark is never ahead of the agent's, so every window
*it* closes the agent closed too, and ``usage.windows`` must hold at least one record
(any revision) for it, written for that source partition (``producer`` =
``ledgerflow-usage/p<partition>``). One missing is ``usage.missing``, located at the last
turn that counted in the window. Turns are taken as the agent takes them: decoded and
validated, a duplicate delivery (same ``event_id`` within the last ``DEDUPE_WINDOW`` turns
of the partition) counted once. Windows the agent closed only by the wall clock are not
checked (an idle partition's last windows): that is as far as a replay can tell.

Every window written for the partition is also checked for its totals: what ``usage.windows``
charged it (its latest revision's totals plus every ``LateUsage`` delta, each delta once) must be
what the partition's turns in it add up to (docs/usage.md: that sum holds whatever the writer's
watermark, restarts included). More is ``usage.overcharged``, always: every record counts only
turns before the input horizon, which is fixed after ``usage.windows``'. Less is
``usage.undercharged`` once the window's newest turn was written more than the grace period
before the audit started (``overdue_before_ms``), else the agent may not have reached that turn
yet: counted as pending. Both are located at the record carrying the window's latest totals.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ledgerflow.audit.report import Finding
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import MessageSubmitted, UsageWindow
from ledgerflow.errors import LedgerflowError
from ledgerflow.projections.ops import Position
from ledgerflow.usage.windows import UsageState, WindowClosed, WindowConfig, WindowTotals, add, price

DEDUPE_WINDOW = 10_000  # as the usage agent (agents/usage.py)
PRODUCER_PREFIX = "ledgerflow-usage/p"

WindowKey = tuple[str, str, int, int]  # tenant, model, window start, source partition
NOTHING = WindowTotals()


@dataclass(slots=True)
class Charged:
    """What ``usage.windows`` charged one window: its latest revision and every late delta."""

    at: Position | None = None  # the record of the latest revision (else of the last delta)
    end: int = 0
    revision: int = -1  # -1: no revision yet, only deltas
    totals: WindowTotals = NOTHING
    deltas: dict[str, WindowTotals] = field(default_factory=dict)  # by record id: a delta counts once

    @property
    def total(self) -> WindowTotals:
        total = self.totals
        for delta in self.deltas.values():
            total = total.plus(delta)
        return total


class UsageCheck:
    def __init__(self, config: WindowConfig, overdue_before_ms: int | None = None) -> None:
        """``overdue_before_ms``: a window whose newest turn has an older record timestamp (ms
        since the epoch) must be charged in full; None: an undercharged window is always pending."""
        self._config = config
        self._overdue_before_ms = overdue_before_ms
        self.written: set[WindowKey] = set()
        self.charged: dict[int, dict[tuple[str, str, int], Charged]] = {}  # by source partition
        self.sizes: set[int] = set()
        self._state = UsageState(config=config)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._last: dict[tuple[str, str, int], Position] = {}
        self._closed: list[tuple[str, str, int]] = []
        self._counted: dict[tuple[str, str, int], WindowTotals] = {}  # the partition's turns per window
        self._newest_ms: dict[tuple[str, str, int], int] = {}  # their newest record timestamp
        self.windows_checked = 0
        self.windows_totalled = 0
        self.windows_pending = 0

    def add_written(self, record: Event, at: Position | None = None) -> None:
        """A ``usage.windows`` record (read before the inputs) at ``at``."""
        payload = record.payload
        if not isinstance(payload, UsageWindow) or not record.producer.startswith(PRODUCER_PREFIX):
            return
        try:
            partition = int(record.producer.removeprefix(PRODUCER_PREFIX))
        except ValueError:
            return
        self.sizes.add(payload.window_end - payload.window_start)
        key = (record.tenant, payload.model, payload.window_start, partition)
        self.written.add(key)
        window = self.charged.setdefault(partition, {})
        charged = window.setdefault(key[:3], Charged(end=payload.window_end))
        totals = WindowTotals(payload.tokens, payload.events, payload.estimated_tokens)
        if payload.revision < 0:  # a LateUsage delta
            charged.deltas[record.event_id] = totals
            if charged.revision < 0:
                charged.at = at
        elif payload.revision >= charged.revision:
            charged.at, charged.revision, charged.totals = at, payload.revision, totals

    @property
    def comparable(self) -> bool:
        """False when the records were written with another window size than configured."""
        return self.sizes <= {self._config.size_micros}

    def add_input(self, at: Position, event: Event, timestamp_ms: int | None = None) -> None:
        """One decodable record of the partition being folded, in offset order (``timestamp_ms``:
        its record timestamp)."""
        payload = event.payload
        if not isinstance(payload, MessageSubmitted) or event.event_id in self._seen:
            return
        content_len = len(payload.content.encode("utf-8", "surrogatepass"))
        try:
            state, emitted = add(
                self._state, event.tenant, payload.model, event.occurred_at, payload.tokens, content_len
            )
        except LedgerflowError:
            return  # the agent dead-letters it
        self._state = state
        self._seen[event.event_id] = None
        while len(self._seen) > DEDUPE_WINDOW:
            self._seen.popitem(last=False)
        start = event.occurred_at - event.occurred_at % self._config.size_micros
        window = (event.tenant, payload.model, start)
        self._last[window] = at
        self._counted[window] = self._counted.get(window, NOTHING).plus(price(payload.tokens, content_len))
        if timestamp_ms is not None:
            self._newest_ms[window] = max(self._newest_ms.get(window, timestamp_ms), timestamp_ms)
        for item in emitted:
            if isinstance(item, WindowClosed) and not item.correction:
                self._closed.append((item.tenant, item.model, item.window_start))

    def finish(self, partition: int) -> list[Finding]:
        """``usage.missing`` for every window closed in ``partition`` without a record;
        ``usage.overcharged`` / ``usage.undercharged`` for every window written for it whose
        charged totals are not its turns' (``totals``)."""
        found = []
        for tenant, model, start in self._closed:
            self.windows_checked += 1
            if (tenant, model, start, partition) in self.written:
                continue
            at = self._last[(tenant, model, start)]
            found.append(
                Finding(
                    "usage.missing",
                    at.topic,
                    at.partition,
                    at.offset,
                    tenant,
                    f"usage window {model!r} starting at {start} µs closed by event time (the last turn "
                    "counted in it is here) but usage.windows has no record of it for this partition",
                )
            )
        found += self.totals(partition)
        self._state = UsageState(config=self._config)
        self._seen.clear()
        self._last.clear()
        self._closed = []
        self._counted.clear()
        self._newest_ms.clear()
        return found

    def totals(self, partition: int) -> list[Finding]:
        """Every window written for ``partition`` whose charged totals differ from its turns' (the
        module doc)."""
        found = []
        for (tenant, model, start), charged in sorted(self.charged.pop(partition, {}).items()):
            key = (tenant, model, start, partition)
            self.windows_totalled += 1
            expected, got = self._counted.get((tenant, model, start), NOTHING), charged.total
            if got == expected:
                continue
            # more of anything is never a lag (tuples compared in order judged (4 tokens, 9 turns)
            # against (5, 1) as less, and left it pending)
            over = any(g > e for g, e in zip(_as_tuple(got), _as_tuple(expected), strict=True))
            newest = self._newest_ms.get((tenant, model, start))
            overdue = (
                self._overdue_before_ms is not None
                and newest is not None
                and newest < self._overdue_before_ms
            )
            if not over and not overdue:
                self.windows_pending += 1
                continue
            found.append(_charged_finding(key, charged, expected, over))
        return found


def _as_tuple(totals: WindowTotals) -> tuple[int, int, int]:
    return totals.tokens, totals.events, totals.estimated_tokens


def _charged_finding(key: WindowKey, charged: Charged, expected: WindowTotals, over: bool) -> Finding:
    tenant, model, start, partition = key
    got = charged.total
    revision = f"revision {charged.revision}" if charged.revision >= 0 else "no revision"
    late = f" plus {len(charged.deltas)} late delta(s)" if charged.deltas else ""
    detail = (
        f"usage window {model!r} [{start}, {charged.end}) µs of source partition {partition} is charged "
        f"{_described(got)} in usage.windows ({revision}{late}), but its turns on conversation.events "
        f"give {_described(expected)}: {'more' if over else 'less'} than was used"
    )
    at = charged.at
    return Finding(
        f"usage.{'overcharged' if over else 'undercharged'}",
        at.topic if at is not None else "usage.windows",
        at.partition if at is not None else None,
        at.offset if at is not None else None,
        tenant,
        detail,
    )


def _described(totals: WindowTotals) -> str:
    return f"{totals.tokens} tokens for {totals.events} turn(s) ({totals.estimated_tokens} estimated)"
