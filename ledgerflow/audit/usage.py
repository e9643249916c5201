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
"""

from __future__ import annotations

from collections import OrderedDict

from ledgerflow.audit.report import Finding
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import MessageSubmitted, UsageWindow
from ledgerflow.errors import LedgerflowError
from ledgerflow.projections.ops import Position
from ledgerflow.usage.windows import UsageState, WindowClosed, WindowConfig, add

DEDUPE_WINDOW = 10_000  # as the usage agent (agents/usage.py)
PRODUCER_PREFIX = "ledgerflow-usage/p"

WindowKey = tuple[str, str, int, int]  # tenant, model, window start, source partition


class UsageCheck:
    def __init__(self, config: WindowConfig) -> None:
        self._config = config
        self.written: set[WindowKey] = set()
        self.sizes: set[int] = set()
        self._state = UsageState(config=config)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._last: dict[tuple[str, str, int], Position] = {}
        self._closed: list[tuple[str, str, int]] = []
        self.windows_checked = 0

    def add_written(self, record: Event) -> None:
        """A ``usage.windows`` record (read before the inputs)."""
        payload = record.payload
        if not isinstance(payload, UsageWindow) or not record.producer.startswith(PRODUCER_PREFIX):
            return
        try:
            partition = int(record.producer.removeprefix(PRODUCER_PREFIX))
        except ValueError:
            return
        self.sizes.add(payload.window_end - payload.window_start)
        self.written.add((record.tenant, payload.model, payload.window_start, partition))

    @property
    def comparable(self) -> bool:
        """False when the records were written with another window size than configured."""
        return self.sizes <= {self._config.size_micros}

    def add_input(self, at: Position, event: Event) -> None:
        """One decodable record of the partition being folded, in offset order."""
        payload = event.payload
        if not isinstance(payload, MessageSubmitted) or event.event_id in self._seen:
            return
        try:
            state, emitted = add(
                self._state,
                event.tenant,
                payload.model,
                event.occurred_at,
                payload.tokens,
                len(payload.content.encode("utf-8", "surrogatepass")),
            )
        except LedgerflowError:
            return  # the agent dead-letters it
        self._state = state
        self._seen[event.event_id] = None
        while len(self._seen) > DEDUPE_WINDOW:
            self._seen.popitem(last=False)
        start = event.occurred_at - event.occurred_at % self._config.size_micros
        self._last[(event.tenant, payload.model, start)] = at
        for item in emitted:
            if isinstance(item, WindowClosed) and not item.correction:
                self._closed.append((item.tenant, item.model, item.window_start))

    def finish(self, partition: int) -> list[Finding]:
        """``usage.missing`` for every window closed in ``partition`` without a record."""
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
        self._state = UsageState(config=self._config)
        self._seen.clear()
        self._last.clear()
        self._closed = []
        return found
