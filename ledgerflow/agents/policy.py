"""The policy agent: one chained decision per ``MessageSubmitted``, exactly once.

Input partition *p* of ``conversation.events`` is decided into partition *p* of
``policy.decisions`` (same key, same partition count), and only the worker that owns
input partition *p* writes output partition *p*. So output partition *p* is a complete,
ordered account of how far input partition *p* has been decided, and recovery needs no
transaction:

1. On the first batch of a partition after (re)assignment, load the chain-head snapshot
   from Redis (a cache: empty after a flush) and read output partition *p* from the
   snapshot's offset to its end. That rolls every conversation's chain head forward and
   yields the input offset of the last decision written (header ``lf-input``). Only records
   that link to their chain's head, hash right and answer an input the input partition
   holds count (``agents/trusted.py``): anything else on the topic was not written by this
   agent and is skipped, logged with its reason and counted.
2. Skip input records at or below that offset: they were decided before a crash or a
   rebalance and are being redelivered. Records between it and the first offset faust
   delivers (the group's committed offset — e.g. when the policy agent joins a group whose
   other agents already consumed the topic) are read back and decided first: no turn is
   ever left without a decision.
3. Wait until reference data (rule packs, training state) has read everything in its
   log, then decide each turn with the pure ``ledgerflow.policy.wire.decide``. A record that
   is too large, does not decode or validate, or whose evaluation raises, becomes a dead
   letter (``contracts/deadletters.py``: always fits); a turn whose ``event_id`` was decided
   in this partition lately (the last ``DEDUPE_WINDOW`` decisions) is a duplicate
   delivery and is not decided again. Chain heads are staged, not yet applied.
4. Produce the batch's dead letters, then its decisions to partition *p* with an
   idempotent producer, and wait for every ack. Only then apply the staged chain heads,
   decided offsets and event ids to the in-memory state.
5. At most once a second, save the chain heads and offsets touched since the last save
   to Redis (one MULTI). The snapshot is only a shortcut for step 1: an older one means
   a longer roll-forward, never a wrong one. A snapshot *ahead* of the log's end means the
   log is not readable yet (a broker restarting): recovery waits, it never restarts
   chains from an incomplete log.
6. Return: faust acks the batch and commits its offsets.
A crash between 4 and 6 is repaired by 1 and 2 on redelivery. Any failure of a batch
(Kafka, Redis, a timeout) forgets the partitions' in-memory state and retries the batch
after a backoff (``agents/app.py: handle_until_done``): it is recovered from the log.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import faust

from ledgerflow.agents.app import handle_until_done, input_log
from ledgerflow.agents.batching import Route
from ledgerflow.agents.batchloop import BatchLoop, as_tps, loop_group
from ledgerflow.agents.deadletters import DeadLetterSink, dead_letter_of
from ledgerflow.agents.fence import FencedOutput, Prove
from ledgerflow.agents.layout import PartitionGuard, misplaced
from ledgerflow.agents.output import CoPartitionedOutput, LogNotReady, Outgoing, Written
from ledgerflow.agents.ownership import Ownership
from ledgerflow.agents.ports import (
    ChainHeadStore,
    DeadLetterPort,
    InputLog,
    OutputLog,
    ReferenceView,
    Snapshot,
)
from ledgerflow.agents.shared import SharedDecodes
from ledgerflow.agents.shutdown import close_at_shutdown
from ledgerflow.agents.snapshots import RedisChainHeads
from ledgerflow.agents.trusted import HEADLESS, UNDECODABLE, OutputRecord, Skipped, judge, vouched
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead, decision_chain_key
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.deadletters import evaluation_failed
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import DeadLetter, PolicyDecision
from ledgerflow.errors import DecodeError
from ledgerflow.kafka.admin import committed_offsets
from ledgerflow.kafka.reference import ReferenceData, RefusedRecord
from ledgerflow.metrics import DECISION_LATENCY, DECISIONS, RECORDS_PROCESSED, RECOVERY_SKIPPED, pack_refused
from ledgerflow.policy.wire import chain_key, decide, head_after
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, POLICY_RULES
from ledgerflow.tracing import spans

log = logging.getLogger(__name__)

NAME = "policy"
SNAPSHOT_EVERY_S = 1.0
CATCH_UP_S = 2.0


DEDUPE_WINDOW = 10_000
"""Per partition: event ids of the latest decisions a duplicate delivery is recognised against."""
SKIPS_LOGGED = 10
"""Per recovery of a partition: records not taken as the agent's own logged one line each (then a count)."""
SNAPSHOT_DISTRUST_S = 120.0
"""How long recovery waits for a log that is behind its snapshot before it trusts the log alone."""


@dataclass
class PartitionState:
    """What the agent knows about one input partition it owns."""

    last_input: int = -1  # highest input offset already decided
    out_offset: int = -1  # highest output offset covered by ``heads``
    heads: dict[str, ChainHead] = field(default_factory=dict)
    recent: OrderedDict[str, int] = field(default_factory=OrderedDict)  # event id -> input offset

    def remember(self, event_id: str, offset: int) -> None:
        self.recent[event_id] = offset
        self.recent.move_to_end(event_id)
        while len(self.recent) > DEDUPE_WINDOW:
            self.recent.popitem(last=False)


@dataclass
class Staged:
    """One partition's effects of a batch, applied to its state once they are durable."""

    heads: dict[str, ChainHead] = field(default_factory=dict)
    decided: dict[str, int] = field(default_factory=dict)  # event id -> input offset
    last_input: int = -1

    def head(self, state: PartitionState, key: str) -> ChainHead | None:
        """The head of chain ``key`` (``decision_chain_key(tenant, subject)``)."""
        return self.heads.get(key) or state.heads.get(key)

    def seen(self, state: PartitionState, event_id: str) -> int | None:
        found = self.decided.get(event_id)
        return state.recent.get(event_id) if found is None else found

    def apply(self, state: PartitionState) -> None:
        state.heads.update(self.heads)
        for event_id, offset in self.decided.items():
            state.remember(event_id, offset)
        state.last_input = max(state.last_input, self.last_input)


@dataclass
class Batch:
    """What deciding one batch produced (step 3), before any of it is written."""

    out: list[Outgoing] = field(default_factory=list)
    records: list[Event] = field(default_factory=list)  # the decision record of each ``out``
    letters: list[DeadLetter] = field(default_factory=list)
    misplaced: list[Any] = field(default_factory=list)  # turns not where their keys belong: ``_misplaced``
    staged: dict[int, Staged] = field(default_factory=dict)
    outcomes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Ports:
    """Everything the policy agent reads and writes (see ``agents/ports.py``)."""

    heads: ChainHeadStore
    output: OutputLog
    inputs: InputLog
    reference: ReferenceView
    sink: DeadLetterPort | None  # None: the projector owns this topic's dead letters

    @classmethod
    def connect(
        cls, app: faust.App, settings: Settings, owns_dlq: bool = True, prove: Prove | None = None
    ) -> Ports:
        """The Kafka and Redis adapters of a worker; ``prove``: the group membership every claim of
        an output partition is checked against first (``agents/fence.py``)."""
        input_topic, output_topic = settings.topic(CONVERSATION_EVENTS), settings.topic(POLICY_DECISIONS)
        rules_sink = DeadLetterSink(app, NAME)

        async def refused(record: RefusedRecord) -> None:
            """A ``policy.rules`` record reference data refused: dead-lettered with its reason, counted."""
            await rules_sink.send_all([dead_letter_of(record, record.reason, NAME, POLICY_RULES)])
            pack_refused(record.reason)

        output: OutputLog = CoPartitionedOutput(settings, input_topic, output_topic)
        return cls(
            heads=RedisChainHeads(settings, NAME),
            output=output if prove is None else FencedOutput(output, input_topic, prove),
            inputs=input_log(app, settings, input_topic),
            reference=ReferenceData(settings, on_refused=refused),
            sink=DeadLetterSink(app, NAME) if owns_dlq else None,
        )


class PolicyAgent:
    def __init__(
        self,
        settings: Settings,
        ports: Ports,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedDecodes | None = None,
        guard: PartitionGuard | None = None,
    ) -> None:
        self.input_topic = settings.topic(CONVERSATION_EVENTS)
        self.output_topic = settings.topic(POLICY_DECISIONS)
        self._ports = ports
        self._shared = shared or SharedDecodes()  # decode once with the worker's projector
        self._clock = clock
        self._guard = guard  # the pinned partition layout (agents/layout.py); None: unchecked
        self._partitions: dict[int, PartitionState] = {}
        self._started = False
        self._dirty: dict[int, set[str]] = {}
        # Per partition, the ``__out`` of the snapshot this owner recovered from or last saved: a
        # partial save completes that one (``Snapshot.base``), never an older one Redis went back to.
        self._bases: dict[int, int] = {}
        self._saved_at: float | None = None
        self._behind_since: dict[int, float] = {}

    async def _start(self) -> None:
        if self._started:
            return
        await self._ports.output.start()
        await self._ports.reference.start()
        self._started = True

    @property
    def recovered(self) -> set[int]:
        return set(self._partitions)

    async def catch_up(self, committed: dict[int, int], assigned: set[int]) -> None:
        """Decide what lies below the group's committed offset in owned partitions that no
        batch has reached yet (see step 2; a partition without new traffic gets no batch)."""
        await self._start()
        records: list[Any] = []
        targets = set(assigned - set(self._partitions))
        try:
            for p in sorted(targets):
                passed = committed.get(p, 0)  # the group committed it: the partition holds what is below
                records += await self._recover_partition(p, passed, passed)
            if records:
                log.warning("policy: deciding %d records the consumer group had already passed", len(records))
                await self.handle(records)
        except BaseException:
            self.revoke(targets)  # recovered again on the next try
            raise

    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self._partitions.pop(p, None)
            self._dirty.pop(p, None)
            self._bases.pop(p, None)

    async def handle(self, messages: Sequence[Any]) -> None:
        """Steps 1 to 5 for one batch (``recover``, ``decide_batch``, ``write``, ``snapshot``)."""
        await self._start()
        began = time.perf_counter()
        if self._guard is not None:
            self._guard.batch(messages)  # partitions added to a live topic: refused, nothing written
        messages = await self.recover(messages)  # Steps 1 and 2.
        await self._ports.reference.sync()  # Step 3.
        batch = self.decide_batch(messages)
        await self._misplaced(batch)
        await self.write(batch)  # Step 4.
        await self.snapshot()  # Step 5.
        if batch.out:
            DECISION_LATENCY.observe((time.perf_counter() - began) / len(batch.out))

    async def recover(self, messages: Sequence[Any]) -> list[Any]:
        """Steps 1 and 2: recover every partition this batch is the first of since its
        assignment; the batch, preceded by the records the group passed before it."""
        backfill: list[Any] = []
        for p in sorted({m.partition for m in messages} - set(self._partitions)):
            offsets = [m.offset for m in messages if m.partition == p]
            backfill += await self._recover_partition(p, min(offsets), max(offsets) + 1)
        if backfill:
            log.warning("policy: deciding %d records the consumer group had already passed", len(backfill))
        return [*backfill, *messages]

    async def _recover_partition(self, p: int, first: int, held: int) -> list[Any]:
        """Recover partition ``p`` (step 1); its records from the last decided one up to ``first``.
        ``held``: one past the batch's last offset of ``p`` (the partition holds every record below)."""
        self._partitions[p] = state = await self._recover(p, held)
        return list(await self._ports.inputs.read(p, state.last_input + 1, first))

    def decide_batch(self, messages: Sequence[Any]) -> Batch:
        """Step 3 (and the redelivery skip of step 2), for partitions already recovered."""
        states = {p: self._partitions[p] for p in {m.partition for m in messages}}
        batch = Batch(staged={p: Staged() for p in states})
        processed = 0
        for msg in messages:
            state, stage = states[msg.partition], batch.staged[msg.partition]
            if msg.offset <= max(state.last_input, stage.last_input):  # Step 2.
                continue
            processed += 1
            with spans.consumed(msg, "decide", batch.out):  # trace hook: headers in → headers out
                self._decide_one(msg, state, stage, batch)
        RECORDS_PROCESSED.labels(NAME, CONVERSATION_EVENTS).inc(processed)  # once per batch: labels() costs
        return batch

    def _decide_one(self, msg: Any, state: PartitionState, stage: Staged, batch: Batch) -> None:
        try:
            event = self._shared.decode(msg, CONVERSATION_EVENTS)
        except DecodeError as exc:
            self._reject(batch.letters, msg, exc.reason)
            return
        first = stage.seen(state, event.event_id)
        if first is not None:
            log.info(
                "policy: %s[%d]@%d repeats event %s decided at input offset %d: duplicate delivery, "
                "not decided again",
                msg.topic,
                msg.partition,
                msg.offset,
                event.event_id,
                first,
            )
            return
        reference = self._ports.reference
        head = stage.head(state, decision_chain_key(event.tenant, event.subject))
        guard = self._guard
        if head is None and guard is not None and misplaced(msg, guard.partitions) is not None:
            batch.misplaced.append(msg)  # its chain may live in another partition: judged before writing
            return
        try:
            record = decide(
                event,
                msg.value,
                reference.pack_for(event.tenant),
                reference.training_for(event.tenant),
                head,
                reference.models_for(event.tenant),
            )
            encoded = None if record is None else codec.encode(record)
        except Exception as exc:  # a turn that cannot be evaluated must not stop the partition
            log.exception("policy: evaluating %s[%d]@%d failed", msg.topic, msg.partition, msg.offset)
            self._reject(batch.letters, msg, evaluation_failed(exc))
            return
        if record is None or encoded is None or not isinstance(record.payload, PolicyDecision):
            return
        after = head_after(record)
        stage.heads[after.key] = after
        stage.decided[event.event_id] = msg.offset
        stage.last_input = msg.offset
        batch.out.append(Outgoing(msg.partition, msg.offset, event.subject.encode(), encoded))
        batch.records.append(record)
        batch.outcomes.append(record.payload.outcome)

    async def write(self, batch: Batch) -> None:
        """Step 4: dead letters, then decisions, acknowledged; only then the staged state."""
        if self._ports.sink is not None:
            await self._ports.sink.send_all(batch.letters)
        offsets = await self._ports.output.write(batch.out)
        for p, stage in batch.staged.items():
            state = self._partitions.get(p)
            if state is None:  # revoked while the batch was written: recovered from the log again
                continue
            stage.apply(state)
            if stage.heads:
                self._dirty.setdefault(p, set()).update(stage.heads)
        for sent, record, offset in zip(batch.out, batch.records, offsets, strict=True):
            state = self._partitions.get(sent.partition)
            if state is not None:
                state.out_offset = max(state.out_offset, offset)
            self._shared.wrote(self.output_topic, sent.partition, offset, sent.value, record)
        for outcome, count in Counter(batch.outcomes).items():
            DECISIONS.labels(outcome).inc(count)

    async def snapshot(self) -> None:
        """Step 5: at most every ``SNAPSHOT_EVERY_S``, the touched heads of owned partitions."""
        now = self._clock()
        if self._saved_at is not None and now - self._saved_at < SNAPSHOT_EVERY_S:
            return
        snapshots = {
            p: Snapshot(
                state.last_input,
                state.out_offset,
                {k: state.heads[k] for k in chain_keys},
                complete=len(chain_keys) == len(state.heads),
                base=self._bases.get(p, -1),
            )
            for p, chain_keys in self._dirty.items()
            if (state := self._partitions.get(p)) is not None
        }
        unsaved = await self._ports.heads.save(snapshots)
        self._dirty = {}
        for p, saved in snapshots.items():
            if p not in unsaved and p in self._partitions:
                self._bases[p] = max(self._bases.get(p, -1), saved.out_offset)
        for p in unsaved:  # the stored snapshot is gone (Redis lost it): the next save holds every head
            if (state := self._partitions.get(p)) is not None:
                self._dirty[p] = set(state.heads)
        self._saved_at = now

    async def _misplaced(self, batch: Batch) -> None:
        """Turns found where their keys do not belong (docs/scaling.md, "Adding partitions"): if
        partitions were added, the worker stops before anything of the batch is written; else each
        was misrouted by its producer, and is dead-lettered while the rest of the batch goes on."""
        if not batch.misplaced or self._guard is None:
            return
        reasons = await self._guard.misrouted(batch.misplaced)
        for msg, reason in zip(batch.misplaced, reasons, strict=True):
            log.warning("policy: dead-lettering %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, reason)
            self._reject(batch.letters, msg, reason)

    def _reject(self, letters: list[DeadLetter], msg: Any, reason: str) -> None:
        if self._ports.sink is not None:  # else the projector owns this topic's dead letters
            letters.append(dead_letter_of(msg, reason, NAME, CONVERSATION_EVENTS))

    async def _recover(self, p: int, held: int = 0) -> PartitionState:
        """Step 1: chain heads and decided input offset of partition ``p`` from the snapshot + the log.

        ``held``: an end offset the input partition is known to reach (one past a record delivered
        to this owner). Only records ``agents/trusted.py`` takes as this agent's own count.
        """
        output = self._ports.output
        await output.claim(p)  # earlier writers fenced first: nothing of theirs lands after what is read
        cached = await self._ports.heads.load(p)
        end = await output.end(p)
        # Asked after the claim: every record read below answers an input consumed before it was
        # written, so below this end. The batch's records were delivered, so the partition holds them
        # whatever the end reads (a new leader's high watermark can lag for a moment): bounded by
        # less, the decision of a redelivered turn is judged beyond the input and the turn decided twice.
        input_end = max(await self._ports.inputs.end(p), held)
        if cached.out_offset >= end:
            why = f"{self.output_topic}[{p}] ends at {end} but the snapshot covers offset {cached.out_offset}"
            cached = self._distrust(p, why)
            await self._ports.heads.drop(
                p
            )  # its heads and offsets are the old topic's; saves only move forward
        elif cached.last_input >= input_end:
            why = (
                f"{self.input_topic}[{p}] ends at {input_end} but the snapshot says input offset "
                f"{cached.last_input} was decided"
            )
            cached = self._distrust(p, why)
            await self._ports.heads.drop(p)
        self._behind_since.pop(p, None)
        skips = _Skips(self.output_topic, p)
        state = await self._replay(p, cached, end, input_end, skips)
        if state is None:
            log.warning(
                "policy: %s[%d] continues a chain its snapshot has no head for; recovering from the log "
                "alone",
                self.output_topic,
                p,
            )
            cached, skips = Snapshot(), _Skips(self.output_topic, p)
            state = await self._replay(p, cached, end, input_end, skips)
            assert state is not None  # from the log's start every chain starts in it
        self._bases[p] = cached.out_offset
        if cached.out_offset < 0 and state.heads:
            # Recovered from the log alone: save every head, or the next snapshot holds only the chains
            # touched from now on and its next owner finds the others headless.
            self._dirty[p] = set(state.heads)
        skips.report()
        log.info(
            "policy: partition %d recovered (%d decisions replayed, %d skipped, last input %d)",
            p,
            skips.read,
            skips.total,
            state.last_input,
        )
        return state

    async def _replay(
        self, p: int, snapshot: Snapshot, end: int, input_end: int, skips: _Skips
    ) -> PartitionState | None:
        """Roll ``snapshot`` forward through output ``p`` up to ``end``: only the records ``judge``
        trusts move a chain head or the decided offset. None when a record continues a chain the
        snapshot has no head for (a snapshot saved while Redis had lost some heads, or a forgery):
        the caller reads the log from its start instead.

        The records the snapshot covers are read too (the duplicate-delivery memory, at most
        ``DEDUPE_WINDOW`` back): only those its heads lead back to (``vouched``) are remembered.
        """
        state = PartitionState(snapshot.last_input, snapshot.out_offset, dict(snapshot.heads))
        covered: list[OutputRecord] | None = []
        rolled: set[str] = set()
        start = min(snapshot.out_offset + 1, max(0, end - DEDUPE_WINDOW))
        async for written in self._ports.output.read(p, start, end):
            skips.read += 1
            record = self._decoded(written, skips)
            if written.offset <= snapshot.out_offset:
                if record is not None and covered is not None:
                    covered.append(record)
                continue
            if covered is not None:
                self._remember_vouched(state, snapshot, covered, input_end, skips)
                covered = None
            state.out_offset = max(state.out_offset, written.offset)
            if record is None:
                continue
            verdict = judge(state.heads.get(chain_key(record.decision)), record, input_end)
            if isinstance(verdict, Skipped):
                if verdict.reason == HEADLESS and snapshot.out_offset >= 0:
                    return None
                skips.add(record.offset, verdict)
                continue
            state.heads[verdict.head.key] = verdict.head
            state.last_input = max(state.last_input, verdict.input_offset)
            state.remember(verdict.input_event_id, verdict.input_offset)
            rolled.add(verdict.head.key)
        if covered:
            self._remember_vouched(state, snapshot, covered, input_end, skips)
        if rolled:
            # Saved with the next snapshot: a head learned from the log past the snapshot (its owner
            # lost the partition before saving it) would otherwise stay missing from it for good.
            self._dirty.setdefault(p, set()).update(rolled)
        return state

    @staticmethod
    def _remember_vouched(
        state: PartitionState, snapshot: Snapshot, covered: list[OutputRecord], input_end: int, skips: _Skips
    ) -> None:
        """Remember the covered records the snapshot vouches for. One of a chain the snapshot has no
        head for is a forgery, not a gap: saves keep a snapshot complete (a partial save onto a
        snapshot Redis lost or took back is refused, ``Snapshot.base``). So it is skipped, and a
        forgery the snapshot covers never sends each later recovery back to the log's start."""
        found = vouched(snapshot.heads, covered, input_end)
        for trusted in found.taken:
            state.remember(trusted.input_event_id, trusted.input_offset)
        for record, why in found.skipped:
            skips.add(record.offset, why)

    def _decoded(self, written: Written, skips: _Skips) -> OutputRecord | None:
        try:
            decision = codec.decode(written.value, allowed_types=TOPIC_TYPES[POLICY_DECISIONS])
        except DecodeError as exc:
            skips.add(written.offset, Skipped(UNDECODABLE, exc.reason))
            return None
        return OutputRecord(written.offset, decision, written.input_offset)

    def _distrust(self, p: int, why: str) -> Snapshot:
        """The snapshot is ahead of a log: ``why`` says which and how.

        Right after a broker restart a log may not be readable to its end yet: wait (the caller
        retries) rather than rebuild chains from a log that looks shorter than it is. Only when it
        stays so for ``SNAPSHOT_DISTRUST_S`` (the topic was deleted and re-created, or the snapshot
        was saved from records this agent no longer takes as its own) is the snapshot dropped and
        the log, read to its end, trusted alone.
        """
        since = self._behind_since.setdefault(p, self._clock())
        if self._clock() - since < SNAPSHOT_DISTRUST_S:
            raise LogNotReady(f"policy: {why}: the log is not readable to its end yet; waiting")
        log.error(
            "policy: %s, still after %.0f s: the topic was re-created or the snapshot is not to be trusted; "
            "dropping the snapshot and recovering from the log alone",
            why,
            SNAPSHOT_DISTRUST_S,
        )
        self._behind_since.pop(p, None)
        return Snapshot()


class _Skips:
    """The records one recovery did not take as the agent's own: counted by reason, the first few
    logged one line each (a flood of forgeries must not flood the log), reported once."""

    def __init__(self, topic: str, partition: int) -> None:
        self._where = f"{topic}[{partition}]"
        self.read = 0
        self.counts: Counter[str] = Counter()
        self._first: list[tuple[int, Skipped]] = []

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, offset: int, why: Skipped) -> None:
        self.counts[why.reason] += 1
        if len(self._first) < SKIPS_LOGGED:
            self._first.append((offset, why))

    def report(self) -> None:
        for offset, why in self._first:
            log.warning(
                "policy: %s@%d not taken as this agent's own at recovery: %s", self._where, offset, why
            )
        if self.total > len(self._first):
            log.warning(
                "policy: %s: %d records not taken as this agent's own at recovery (%s)",
                self._where,
                self.total,
                ", ".join(f"{reason} {n}" for reason, n in sorted(self.counts.items())),
            )
        for reason, n in self.counts.items():
            RECOVERY_SKIPPED.labels(reason).inc(n)


def register(
    app: faust.App,
    loop: BatchLoop,
    settings: Settings,
    owns_dlq: bool = True,
    guard: PartitionGuard | None = None,
) -> PolicyAgent:
    """The policy agent on the hot path's batch loop (``agents/batchloop.py``), plus its catch-up timer;
    its decisions are written only while the loop's group counts this member as their partition's owner.
    Its output log and reference data are closed when the worker stops (``agents/shutdown.py``)."""
    ports = Ports.connect(app, settings, owns_dlq, prove=loop.prove)
    close_at_shutdown(app, NAME, ports.output.close, ports.reference.close)
    return attach(app, loop, settings, PolicyAgent(settings, ports, shared=loop.shared, guard=guard))


def attach(app: faust.App, loop: BatchLoop, settings: Settings, agent_state: PolicyAgent) -> PolicyAgent:
    """Run ``agent_state`` as a route of ``loop``: batches, rebalances and the catch-up timer."""
    ownership = Ownership(agent_state.input_topic)

    async def owned(messages: list[Any]) -> None:
        await handle_until_done(
            messages,
            name=NAME,
            lock=ownership.lock,
            owned=ownership.owned,
            handle=agent_state.handle,
            forget=agent_state.revoke,
        )

    loop.add(Route(NAME, frozenset({agent_state.input_topic}), owned))
    loop.on_revoked.append(lambda tps: ownership.on_revoked(as_tps(tps), agent_state.revoke))
    loop.on_assigned.append(lambda tps: ownership.on_assigned(as_tps(tps), agent_state.revoke))

    @app.timer(interval=CATCH_UP_S)  # type: ignore[untyped-decorator]  # faust's timer decorator is untyped
    async def catch_up() -> None:
        if not ownership.assigned - agent_state.recovered:
            return
        try:
            committed = await committed_offsets(settings, loop_group(settings), agent_state.input_topic)
            async with ownership.lock:
                await agent_state.catch_up(committed, ownership.assigned)
        except Exception as exc:  # the next tick retries; state is recovered from the log
            log.warning("policy: catching up failed (%r); retrying in %.0f s", exc, CATCH_UP_S)

    return agent_state
