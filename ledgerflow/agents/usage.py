"""The usage agent: token usage per tenant, model and event-time window.

Windows are folded per input partition of ``conversation.events`` (pure
``ledgerflow.usage``); closed windows and corrections go to ``usage.windows``, hash-chained
per tenant. Output records are keyed by tenant, so unlike the policy agent this agent
cannot rely on co-partitioning: it recognises what it already wrote by derived event id.

Recovery of input partition *p* (its first batch after assignment, or the first tick if that comes
first: a partition with no new turn still has its open windows closed by the clock):
1. Read ``usage.windows`` in full: the ids already written, each tenant's chain head, the
   window sizes written — of the records that are the next link of their chain and in their
   tenant's partition under their tenant's key (the agent's own: it writes each tenant's windows
   there; the log is read partition by partition, so a forged first link read earlier would
   otherwise take a live chain's place). Another size than configured is refused before anything is written
   (``usage.settings.size_problem``): one line, and the worker exits.
2. Re-fold input partition *p* from its start up to its end (never below a batch's first offset),
   forgetting no window and leaving out the turns a ``LateUsage`` delta written counts; its final
   totals are reconciled with the windows written (``usage.windows.reconcile``), and only the difference is
   written. So no turn is counted twice or lost whatever watermark the writer had: raised by the
   wall clock, or under another ``LEDGERFLOW_USAGE_LATENESS_S`` (docs/usage.md).
Then live records fold and emit as usual; a timer advances idle partitions' watermarks
by the wall clock so their windows close too. Re-folding is O(partition size): fine at
demo scale, documented in docs/usage.md as the place to add snapshots.

Poison never stops a partition: a record that does not decode or validate (the policy
agent dead-letters it) is skipped; a turn whose ``event_id`` was folded lately in the same
partition (the last ``DEDUPE_WINDOW`` turns) is a duplicate delivery and is not counted
again; a turn the pure fold refuses is dead-lettered (live records only; a re-fold skips
it) and the rest of the batch is kept. Chain heads and written ids advance only after the
broker acknowledged the records, and ``usage.windows`` is trusted only when it reads at
least as far as this process has seen it (else: not readable yet, retried).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import faust

from ledgerflow.agents import layout
from ledgerflow.agents.app import input_log
from ledgerflow.agents.deadletters import DeadLetterSink, dead_letter_of
from ledgerflow.agents.keyedlog import KafkaKeyedLog
from ledgerflow.agents.ownership import register_timed
from ledgerflow.agents.ports import DeadLetterPort, InputLog, KeyedLog, wall_clock_micros
from ledgerflow.agents.shutdown import close_at_shutdown
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.deadletters import evaluation_failed
from ledgerflow.contracts.eventhash import follows
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.inputs import decode_input
from ledgerflow.contracts.payloads import DeadLetter, MessageSubmitted, UsageWindow
from ledgerflow.errors import DecodeError, InfrastructureError
from ledgerflow.kafka.placement import Placements
from ledgerflow.metrics import USAGE_WINDOW_LAG, USAGE_WINDOWS_EMITTED
from ledgerflow.policy.wire import chain, chain_key, head_after
from ledgerflow.topics import CONVERSATION_EVENTS, USAGE_WINDOWS
from ledgerflow.usage.settings import size_problem, window_config_from
from ledgerflow.usage.windows import (
    UsageState,
    WindowClosed,
    WindowConfig,
    WindowKey,
    add,
    advance,
    reconcile,
    refold_config,
    window_bounds,
)
from ledgerflow.usage.wire import late_id, legacy_id, legacy_late_id, record_of, source_of

log = logging.getLogger(__name__)

NAME = "usage"
TICK_S = 1.0
BATCH = 500
WITHIN_S = 0.05


LateKey = tuple[int, str, str, int, int]
"""(source partition, tenant, model, window start, occurred_at) of a ``LateUsage`` delta written."""


DEDUPE_WINDOW = 10_000
"""Per input partition: event ids of the latest turns a duplicate delivery is recognised against."""


class LogNotReady(InfrastructureError):
    """``usage.windows`` reads shorter than this process has already seen it."""


class WindowSizeChanged(InfrastructureError):
    """``usage.windows`` holds windows of another size than configured (``usage.settings.size_problem``)."""


@dataclass(frozen=True, slots=True)
class Ports:
    """Everything the usage agent reads and writes (see ``agents/ports.py``)."""

    inputs: InputLog  # conversation.events read back by range (the re-fold)
    windows: KeyedLog  # usage.windows, keyed by tenant
    sink: DeadLetterPort

    @classmethod
    def connect(cls, app: faust.App, settings: Settings) -> Ports:
        """The Kafka adapters of a worker, closed when it stops."""
        windows = KafkaKeyedLog(settings, settings.topic(USAGE_WINDOWS))
        close_at_shutdown(app, NAME, windows.close)
        return cls(
            inputs=input_log(app, settings, settings.topic(CONVERSATION_EVENTS)),
            windows=windows,
            sink=DeadLetterSink(app, NAME),
        )


class UsageAgent:
    def __init__(
        self,
        settings: Settings,
        ports: Ports,
        config: WindowConfig | None = None,
        clock: Callable[[], int] = wall_clock_micros,
        refuse: Callable[[str], None] | None = None,
        placements: Placements | None = None,
    ) -> None:
        self._ports = ports
        # Turns outside their conversation's partition (kafka/placement.py) are not counted: the
        # policy agent dead-letters them, and their replay lands where they belong (counted there).
        self._placements = placements
        self._clock = clock
        self._refuse = refuse  # the worker's: one line and exit 1 (agents/layout.py)
        self.input_topic = settings.topic(CONVERSATION_EVENTS)
        self.output_topic = settings.topic(USAGE_WINDOWS)
        self._config = config or WindowConfig()
        self._states: dict[int, UsageState] = {}
        self._folded: dict[int, int] = {}  # input partition -> offset its re-fold read below
        self._seen: dict[int, OrderedDict[str, None]] = {}
        # Per input partition, the old-style LateUsage ids already taken for a turn since its re-fold:
        # an old id stands for one turn (the first, as the old code wrote it), not every turn of its µs.
        self._excused: dict[int, set[str]] = {}
        self._written: set[str] | None = None
        self._heads: dict[str, ChainHead] = {}
        self._latest: dict[int, dict[WindowKey, WindowClosed]] = {}  # source -> window -> latest written
        self._late: set[LateKey] = set()  # the LateUsage deltas written (their turns: left out of a re-fold)
        self._floor: dict[int, int] = {}  # usage.windows partition -> end this process has seen
        self._lock = asyncio.Lock()

    def use_lock(self, lock: asyncio.Lock) -> None:
        """Share the ownership lock: batches, ticks and rebalances never interleave."""
        self._lock = lock

    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self._states.pop(p, None)
            with contextlib.suppress(KeyError):  # its lag is its next owner's to export
                USAGE_WINDOW_LAG.remove(str(p))
            self._folded.pop(p, None)
            self._seen.pop(p, None)
            self._excused.pop(p, None)
        self._written = None  # another worker may have written since: re-read on next use

    async def _load_written(self) -> None:
        """Step 1: ids and chain heads of ``usage.windows``, read to its end."""
        await self._ports.windows.start()
        written: set[str] = set()
        heads: dict[str, ChainHead] = {}
        ends: dict[int, int] = {}
        latest: dict[int, dict[WindowKey, WindowClosed]] = {}
        late: set[LateKey] = set()
        sizes: set[int] = set()
        async for raw in self._ports.windows.read():
            ends[raw.partition] = raw.offset + 1
            try:
                record = codec.decode(raw.value or b"", allowed_types=TOPIC_TYPES[USAGE_WINDOWS])
            except DecodeError:
                continue
            if raw.key != record.tenant.encode() or not self._ports.windows.placed(raw.key, raw.partition):
                # The agent writes a tenant's windows under its key, so all in one partition, read in
                # order: a forged first link of a live chain in a partition read earlier would become
                # its head, and every genuine record of the chain would be ignored (written again).
                where = f"{raw.topic}[{raw.partition}]@{raw.offset}"
                log.warning(
                    "usage: %s is not in its tenant's partition (written from outside?); ignored", where
                )
                continue
            key = chain_key(record)
            if not follows(record, heads.get(key)):  # written from outside: it steers nothing
                where = f"{raw.topic}[{raw.partition}]@{raw.offset}"
                log.warning("usage: %s is no next link of its chain (written from outside?); ignored", where)
                continue
            written.add(record.event_id)
            heads[key] = ChainHead(key, record.sequence or 0, record.hash or "")
            _note_latest(latest, record)
            _note_late(late, record)
            _note_size(sizes, record)
        short = {p: (ends.get(p, 0), floor) for p, floor in self._floor.items() if ends.get(p, 0) < floor}
        if short:
            raise LogNotReady(
                f"usage: {self.output_topic} reads shorter than already seen "
                f"(partition: (end, seen) {short}): the log is not readable to its end yet; waiting"
            )
        problem = size_problem(self._config.size_micros, sizes)
        if problem is not None:  # before anything is written at the wrong size
            if self._refuse is not None:
                self._refuse(problem)
            raise WindowSizeChanged(problem)
        self._floor.update(ends)
        self._written, self._heads, self._latest, self._late = written, heads, latest, late

    async def _refold(self, p: int, until: int) -> UsageState:
        """Step 2: fold input partition ``p`` below ``until``, then write only what is missing.

        The fold forgets no window and its records are dropped: ``reconcile`` compares its final
        totals with the windows written (``usage.windows.reconcile``), and a turn a written
        ``LateUsage`` delta counts is left out, so no turn is counted twice whatever watermark
        (lateness, wall clock) the writer had."""
        state = UsageState(config=refold_config(self._config))
        self._seen[p] = OrderedDict()
        self._excused[p] = set()
        for rec in await self._ports.inputs.read(p, 0, until):
            try:
                state, _ = self._fold(state, p, rec.value, rec.key, refold=True)
            except UsageRefused as exc:
                log.warning("usage: %s[%d]@%d skipped on re-fold: %s", rec.topic, p, rec.offset, exc.reason)
                continue
        state, settled = reconcile(state, self._latest.get(p, {}), self._config)
        now = self._clock()
        await self._send([(p, self._record(e, p, now)) for e in settled])
        return state

    def _fold(
        self, state: UsageState, p: int, value: bytes | None, key: bytes | None, refold: bool = False
    ) -> tuple[UsageState, list[Event]]:
        """Fold one record; UsageRefused (with a dead-letter reason) when the fold refuses it.
        ``refold``: a turn a written delta counts is left out, and no record is made."""
        if self._placements is not None and not self._placements.belongs(key, p):
            return state, []  # misrouted: the policy agent dead-letters it
        try:
            event = decode_input(value, key, CONVERSATION_EVENTS)
        except DecodeError:
            return state, []  # the policy agent dead-letters poison records of this topic
        payload = event.payload
        if not isinstance(payload, MessageSubmitted):
            return state, []
        seen = self._seen.setdefault(p, OrderedDict())
        if event.event_id in seen:
            return state, []  # a duplicate delivery is counted once
        if refold and self._in_delta(p, event.tenant, payload.model, event.occurred_at, event.event_id):
            seen[event.event_id] = None
            return state, []
        try:
            state, emitted = add(
                state,
                event.tenant,
                payload.model,
                event.occurred_at,
                payload.tokens,
                len(payload.content.encode("utf-8", "surrogatepass")),
            )
            records = (
                [] if refold else [self._record(e, p, event.occurred_at, event.event_id) for e in emitted]
            )
        except Exception as exc:
            raise UsageRefused(evaluation_failed(exc)) from exc
        seen[event.event_id] = None
        while len(seen) > DEDUPE_WINDOW:
            seen.popitem(last=False)
        return state, records

    def _in_delta(self, p: int, tenant: str, model: str, occurred_at: int, event_id: str) -> bool:
        """Whether a ``LateUsage`` delta written for source ``p`` counts this turn: under its id, or
        under an old-style id (``legacy_late_id``) no other turn of its microsecond took yet."""
        start, _ = window_bounds(self._config, occurred_at)
        if (p, tenant, model, start, occurred_at) not in self._late:
            return False
        assert self._written is not None
        if late_id(tenant, model, start, p, occurred_at, event_id) in self._written:
            return True
        legacy = legacy_id(tenant, model, start, p, occurred_at)
        excused = self._excused.setdefault(p, set())
        if legacy in self._written and legacy not in excused:
            excused.add(legacy)  # an old delta stands for one turn of its microsecond: this one
            return True
        return False

    def _record(self, emitted: Any, p: int, occurred_at: int, cause: str = "") -> Event:
        return record_of(emitted, p, occurred_at, cause)

    async def _send(self, records: list[tuple[int, Event]]) -> None:
        """Chain and produce records (each with its input partition) not written before; wait for the
        acks, then advance."""
        assert self._written is not None
        pending: list[tuple[int, bytes, bytes]] = []
        heads: dict[str, ChainHead] = {}
        ids: set[str] = set()
        kinds: list[str] = []
        for source, record in records:
            if record.event_id in self._written or record.event_id in ids:
                continue
            legacy = legacy_late_id(record)
            excused = self._excused.setdefault(source, set())
            if legacy is not None and legacy in self._written and legacy not in excused:
                excused.add(legacy)  # a delta written before ids named its turn: it stands for this one
                continue
            key = chain_key(record)  # (tenant, source partition): this worker is its only writer
            chained = chain(record, heads.get(key) or self._heads.get(key))
            heads[key] = head_after(chained)
            ids.add(record.event_id)
            pending.append((source, record.tenant.encode(), codec.encode(chained)))
            kinds.append("correction" if record.payload.correction else "closed")  # type: ignore[union-attr]
        if not pending:
            return
        for partition, offset in await self._ports.windows.write(pending):
            self._floor[partition] = max(self._floor.get(partition, 0), offset + 1)
        self._heads.update(heads)
        self._written |= ids
        for kind in kinds:
            USAGE_WINDOWS_EMITTED.labels(kind).inc()

    async def handle(self, messages: Sequence[Any]) -> None:
        async with self._lock:
            new = sorted({m.partition for m in messages} - set(self._states))
            for p in new:  # earlier writers for p fenced before the log is read (agents/keyedlog.py)
                await self._ports.windows.claim(p)
            if new or self._written is None:
                await self._load_written()
            out: list[tuple[int, Event]] = []
            letters: list[DeadLetter] = []
            for msg in messages:
                state = self._states.get(msg.partition)
                if state is None:
                    # To the partition's end, not to this first delivery: a group that lost its
                    # committed offsets delivers from the start again, and each turn it passed would
                    # otherwise be counted again (a LateUsage delta per turn, every window doubled).
                    until = max(msg.offset, await self._ports.inputs.end(msg.partition))
                    state = self._states[msg.partition] = await self._refold(msg.partition, until)
                    self._folded[msg.partition] = until
                if msg.offset < self._folded.get(msg.partition, 0):
                    continue  # the re-fold counted it
                try:
                    state, emitted = self._fold(state, msg.partition, msg.value, msg.key)
                except UsageRefused as exc:
                    letters.append(dead_letter_of(msg, exc.reason, NAME, CONVERSATION_EVENTS))
                    continue
                self._states[msg.partition] = state
                out += [(msg.partition, e) for e in emitted]
            await self._ports.sink.send_all(letters)
            await self._send(out)

    async def tick(self, assigned: AbstractSet[int] = frozenset()) -> None:
        """Close windows of idle partitions: watermark = wall clock − lateness. An owned partition no
        batch has reached since a restart or a rebalance is recovered first (``_recover_idle``), or
        the windows it had open would stay unwritten until its next turn."""
        async with self._lock:
            idle = sorted(set(assigned) - set(self._states))
            if idle:
                await self._recover_idle(idle)
            if self._written is None:
                return
            now = self._clock()
            out: list[tuple[int, Event]] = []
            for p, state in list(self._states.items()):
                if state.watermark is not None:
                    USAGE_WINDOW_LAG.labels(str(p)).set((now - state.watermark) / 1e6)
                state, emitted = advance(state, now - self._config.lateness_micros)
                self._states[p] = state
                out += [(p, self._record(e, p, now)) for e in emitted]
            await self._send(out)

    async def _recover_idle(self, partitions: list[int]) -> None:
        """Recovery steps 1 and 2 for ``partitions`` (owned, not in memory), up to each one's end now:
        claimed before ``usage.windows`` is read, as for a partition's first batch (``handle``),
        whose delivered records below that end are then not folded again."""
        for p in partitions:
            await self._ports.windows.claim(p)
        await self._load_written()
        for p in partitions:
            until = await self._ports.inputs.end(p)
            self._states[p] = await self._refold(p, until)
            self._folded[p] = until


class UsageRefused(Exception):
    """The pure fold refused a decoded turn; ``reason`` is the dead-letter reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def register(app: faust.App, settings: Settings, placements: Placements) -> UsageAgent:
    config = window_config_from(os.environ)
    ports = Ports.connect(app, settings)
    agent_state = UsageAgent(settings, ports, config, refuse=layout.refuse, placements=placements)
    register_timed(app, agent_state, name=NAME, batch=BATCH, within=WITHIN_S, tick_s=TICK_S)
    return agent_state


def _note_latest(latest: dict[int, dict[WindowKey, WindowClosed]], record: Event) -> None:
    """Keep the highest revision written of each window, per source partition (the producer)."""
    payload = record.payload
    if not isinstance(payload, UsageWindow) or payload.revision < 0:
        return  # a LateUsage delta: not a window's totals
    source = source_of(record.producer)
    if source is None:
        return
    key = (record.tenant, payload.model, payload.window_start)
    known = latest.setdefault(source, {}).get(key)
    if known is None or known.revision < payload.revision:
        latest[source][key] = WindowClosed(
            record.tenant,
            payload.model,
            payload.window_start,
            payload.window_end,
            payload.tokens,
            payload.events,
            payload.estimated_tokens,
            payload.revision,
            payload.correction,
        )


def _note_late(late: set[LateKey], record: Event) -> None:
    payload = record.payload
    source = source_of(record.producer)
    if isinstance(payload, UsageWindow) and payload.revision < 0 and source is not None:
        late.add((source, record.tenant, payload.model, payload.window_start, record.occurred_at))


def _note_size(sizes: set[int], record: Event) -> None:
    """The size of a window this agent wrote (another producer's record names no size of ours)."""
    payload = record.payload
    if isinstance(payload, UsageWindow) and source_of(record.producer) is not None:
        sizes.add(payload.window_end - payload.window_start)
