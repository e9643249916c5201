"""The single writer of an event-sourced aggregate per tenant: what the training and the models
agents share (``agents/training.py``, ``agents/models.py``).

Commands from input partition *p* are decided into output partition *p* (co-partitioned,
``agents/output.py``). Per partition:

1. On first use after (re)assignment, output partition *p* is read from the start (one record
   per change) and folded into every tenant's state and chain head; the last input offset
   answered (``lf-input``) and the command ids answered lately are learnt from it. Only the
   agent's own records count (``contracts/outcome_trust.py``): the next link of its tenant's chain
   (sequence, ``prev_hash``, content hash) whose ``lf-input``, if any, is below the input
   partition's end, of a tenant whose home partition is *p* (its tenant key placed under the
   pinned count, ``kafka/placement.misplaced_reason``: the agent answers a tenant's commands only
   there, and every reader takes the tenant's outcomes only from there). Anything else (written
   straight to Kafka) is logged and skipped: it moves no state, head, stamp or answered offset,
   so no expiry or answer of the agent follows from it.
2. Redelivered commands at or below that offset are skipped; commands the consumer group passed
   unanswered (between it and the first offset delivered) are read back and decided first. The
   commands above that offset already in the DLQ (the sink reads it back) are not dead-lettered
   again: a dead letter is written once (Step 4). A letter there keeps a second letter out, never
   an answer: anyone who can write Kafka can put one there naming any offset, so a command it
   names that decodes and is decided is answered (logged) — skipped, it was an admin's command
   lost without an outcome or a letter of its own.
3. Each command is decided by the aggregate's pure ``decide`` against the folded state (its
   ``expected_version``, if any, is the aggregate's optimistic concurrency) at the wall clock, or
   1 µs after the tenant's last outcome if that is later (``versioned.stamp``: a new owner's clock
   may be behind the last owner's); its events, accepted or refused, are appended hash-chained
   per tenant. A command id answered in the partition lately (the last ``DEDUPE_WINDOW``
   answers) is a duplicate delivery, not decided again; a command without an id is decided each
   time (nothing to match a redelivery against). A command that does not decode, or whose
   decision raises, is dead-lettered and the rest go on.
4. A batch's dead letters are acknowledged before its outcomes are written, so an outcome in the
   log means every dead letter before it is in the DLQ. The DLQ is the record of what was
   dead-lettered (an outcome cannot be: a command that does not decode names no tenant whose
   chain could hold it), so a retry or a new owner learns it there, by source partition and
   offset, instead of dead-lettering again.

If a batch fails its partitions' state is forgotten and recovered from the log before the retry,
so the state never runs ahead of what the broker acknowledged.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from ledgerflow.agents.deadletters import dead_letter_of
from ledgerflow.agents.layout import PartitionGuard, misplaced
from ledgerflow.agents.output import Outgoing
from ledgerflow.agents.partitioned import PartitionOwner
from ledgerflow.agents.ports import DeadLetterLog, InputLog, OutputLog
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.deadletters import evaluation_failed
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.inputs import decode_input
from ledgerflow.contracts.outcome_trust import untrusted_reason
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.errors import DecodeError
from ledgerflow.kafka.placement import MISROUTED, Placements, misplaced_reason
from ledgerflow.policy.wire import chain, head_after
from ledgerflow.versioned import CommandSource, stamp

log = logging.getLogger(__name__)

DEDUPE_WINDOW = 10_000
"""Per partition: command ids of the latest answers a duplicate delivery is recognised against."""


class Tenanted(Protocol):
    @property
    def tenant(self) -> str: ...


State = TypeVar("State")
Command = TypeVar("Command", bound=Tenanted)
Change = TypeVar("Change", bound=Tenanted)


def subject_not_tenant(command: Event) -> str | None:
    """Pure: the dead-letter reason of a command whose subject (its key) is not its tenant, else
    None. A command is placed by its key and answered in that partition, while its tenant's state,
    chain and outcomes live in the tenant's partition (where readers and the projection take them
    from, ``kafka/placement.misplaced_reason``): a command keyed otherwise, written straight to
    Kafka, would be decided against a copy of the tenant's state elsewhere."""
    if command.subject == command.tenant:
        return None
    return (
        f"{MISROUTED}: a command's key and subject must be its tenant {command.tenant!r}, not "
        f"{command.subject[:100]!r}: the tenant's state lives in the tenant's partition"
    )


@dataclass(frozen=True, slots=True)
class Aggregate(Generic[State, Command, Change]):
    """An aggregate's pure functions and the topics of its commands and outcomes."""

    name: str  # the agent's name: logs and dead letters
    commands: str  # base topic of the commands
    outcomes: str  # base topic of the outcomes (co-partitioned with the commands)
    initial: Callable[[str], State]
    decide: Callable[[State, Command, int], list[Change]]
    evolve: Callable[[State, Change], State]
    command_of: Callable[[Event], Command]
    record_of: Callable[..., Event]  # (change, *, trace_id, source) -> the unchained outcome record
    event_of: Callable[[Event], Change]


@dataclass
class Partition(Generic[State]):
    """One owned partition: each tenant's state and chain head, and what was answered."""

    initial: Callable[[str], State]
    tenants: dict[str, State] = field(default_factory=dict)
    heads: dict[str, ChainHead] = field(default_factory=dict)
    answered: OrderedDict[str, int] = field(default_factory=OrderedDict)  # command id -> input offset
    last_input: int = -1
    stamps: dict[str, int] = field(default_factory=dict)  # tenant -> its last outcome's occurred_at
    dead: set[int] = field(default_factory=set)  # input offsets above last_input already dead-lettered
    far_ahead: set[str] = field(default_factory=set)  # tenants whose stamp warning was logged

    def now(self, tenant: str, clock: int) -> int:
        """The time to decide ``tenant``'s next change at: never before its last outcome (Step 3)."""
        at = stamp(clock, self.stamps.get(tenant))
        if at < self.stamps.get(tenant, at) and tenant not in self.far_ahead:
            self.far_ahead.add(tenant)  # once: the stored stamp stays ahead, every command would say so
            log.warning(
                "tenant %r: its last outcome is stamped %.0f s ahead of this worker's clock, too far "
                "for a clock skew (a record written from outside?): stamped by the clock",
                tenant,
                (self.stamps[tenant] - clock) / 1e6,
            )
        return at

    def stamped(self, record: Event) -> None:
        self.stamps[record.tenant] = max(
            record.occurred_at, self.stamps.get(record.tenant, record.occurred_at)
        )

    def state(self, tenant: str) -> State:
        return self.tenants.get(tenant) or self.initial(tenant)

    def answer(self, command_id: str, offset: int) -> None:
        self.last_input = max(self.last_input, offset)
        if self.dead:
            self.dead = {o for o in self.dead if o > self.last_input}
        if not command_id:  # nothing to match a redelivery against: remembering "" would drop the next one
            return
        self.answered[command_id] = offset
        self.answered.move_to_end(command_id)
        while len(self.answered) > DEDUPE_WINDOW:
            self.answered.popitem(last=False)


def command_id_of(event: Event) -> str:
    return str(getattr(event.payload, "command_id", "") or "")


class CommandAgent(PartitionOwner[Partition[State]], Generic[State, Command, Change]):
    """I/O through ports (``agents/ports.py``), so its decisions are unit-tested in memory."""

    def __init__(
        self,
        kind: Aggregate[State, Command, Change],
        input_topic: str,
        output: OutputLog,
        inputs: InputLog,
        sink: DeadLetterLog,
        clock: Callable[[], int],
    ) -> None:
        self.kind = kind
        self.input_topic = input_topic
        prefix = input_topic.removesuffix(kind.commands) if input_topic.endswith(kind.commands) else ""
        self.output_topic = prefix + kind.outcomes  # full name, for logs
        self._output, self._inputs, self._sink, self._clock = output, inputs, sink, clock
        # The pinned partition layout (agents/layout.py): a command where its tenant does not
        # belong is dead-lettered (misrouted), or the worker stops if partitions were added; an
        # outcome read back where its tenant does not belong is skipped (Step 1).
        self.guard: PartitionGuard | None = None
        super().__init__()
        self._started = False
        self._unread: set[int] = set()  # recovered by a tick: the inputs before this owner not read yet
        self._unreported: list[tuple[Event, State]] = []  # appended, not acknowledged yet (``_write``)

    def revoke(self, partitions: set[int]) -> None:
        super().revoke(partitions)
        self._unread -= partitions

    async def recover_idle(self, assigned: AbstractSet[int]) -> None:
        """Recover the owned partitions no batch has reached yet (their outcomes, for a tick).
        The commands passed before this owner are read when the partition's first batch comes
        (Step 2), as for a partition recovered by that batch."""
        await self._ensure_started()
        for p in sorted(set(assigned) - set(self._partitions)):
            await self._recover(p)
            self._unread.add(p)

    async def _ensure_started(self) -> None:
        if not self._started:
            await self._output.start()
            self._started = True

    async def _recover(self, p: int, held: int = 0) -> Partition[State]:
        """Step 1: fold output partition ``p`` from its start. ``held``: an end offset input ``p`` is
        known to reach (one past a command delivered from it), whatever the broker answers now."""
        kind, known = self.kind, Partition(self.kind.initial)
        await self._output.claim(p)  # earlier writers fenced before the read
        # Asked after the claim: every outcome read below answers an input consumed before it was
        # written, so below this end.
        input_end = max(await self._inputs.end(p), held)
        placed = self._placements()
        async for written in self._output.read(p):
            try:
                record = codec.decode(written.value, allowed_types=TOPIC_TYPES[kind.outcomes])
            except DecodeError:
                log.error("%s: undecodable audit record at offset %d ignored", kind.name, written.offset)
                continue
            # Placement first: a forgery for a tenant whose home is another partition may link and hash right.
            elsewhere = None if placed is None else misplaced_reason(record.tenant, p, placed)
            head = known.heads.get(record.tenant)
            why = elsewhere or untrusted_reason(record, head, written.input_offset, input_end)
            if why is not None:  # written from outside: it steers nothing (contracts/outcome_trust.py)
                log.warning(
                    "%s: %s[%d]@%d is not the agent's own (written from outside?); ignored: %s",
                    kind.name,
                    self.output_topic,
                    p,
                    written.offset,
                    why,
                )
                continue
            try:
                known.tenants[record.tenant] = kind.evolve(known.state(record.tenant), kind.event_of(record))
            except Exception:  # not a transition of that state (written from outside): the audit reports it
                log.exception(
                    "%s: audit record at offset %d does not apply; ignored", kind.name, written.offset
                )
                continue
            known.heads[record.tenant] = head_after(record)  # its chain key is its tenant (trusted)
            known.stamped(record)
            if written.input_offset is not None:
                known.answer(command_id_of(record), written.input_offset)
        self._partitions[p] = known
        return known

    def _placements(self) -> Placements | None:
        """Where the agent writes each tenant's outcomes: its tenant key's partition under the
        pinned count of its input (``guard``, equal to its output's); None: no layout pinned
        (an agent without a guard checks no placement, of commands or outcomes)."""
        return None if self.guard is None else Placements(self.guard.partitions)

    async def handle(self, messages: Sequence[Any]) -> None:
        async with self._lock:
            self._unreported = []  # what a failed attempt appended was never written
            if self.guard is not None:
                self.guard.batch(messages)  # partitions added to a live topic: refused, nothing written
            await self._ensure_started()
            pending: list[Any] = []
            arrived = {m.partition for m in messages}
            catching_up = sorted((arrived - set(self._partitions)) | (arrived & self._unread))
            for p in catching_up:
                first = min(m.offset for m in messages if m.partition == p)
                known = self._partitions.get(p) or await self._recover(p, first + 1)
                pending += await self._inputs.read(p, known.last_input + 1, first)  # Step 2.
                self._unread.discard(p)
            if catching_up:
                await self._learn_dead_letters(catching_up)
            out: list[Outgoing] = []
            letters: list[DeadLetter] = []
            batch = [*pending, *messages]
            misrouted = await self._misrouted(batch)
            for msg in batch:
                known = self._partitions[msg.partition]
                out += self._answer(msg, known, letters, misrouted.get((msg.partition, msg.offset)))
            await self._sink.send_all(letters)
            for letter in letters:
                self._partitions[letter.partition].dead.add(letter.offset)
            await self._write(out)

    async def _write(self, out: list[Outgoing]) -> None:
        """Write ``out`` and wait for the acks; only then report what it appended (``_appended``):
        a write that fails is retried from the log, and its records must not be counted twice."""
        appended, self._unreported = self._unreported, []
        await self._output.write(out)
        for record, state in appended:
            self._appended(record, state)

    async def _learn_dead_letters(self, partitions: list[int]) -> None:
        """Step 2: the commands above the last answered offset that are in the DLQ already. A
        dead-lettered command leaves no outcome, so the output log cannot tell: without this a
        crash between the letters and the outcomes, or any recovery after a partition's last
        commands were poison, dead-lettered them again."""
        found = await self._sink.dead_lettered(self.input_topic, set(partitions))
        for p in partitions:
            known = self._partitions[p]
            known.dead |= {offset for offset in found.get(p, ()) if offset > known.last_input}

    async def _misrouted(self, batch: Sequence[Any]) -> dict[tuple[int, int], str]:
        """The dead-letter reason of each command of ``batch`` not in the partition its tenant
        belongs in (a producer with another partitioner: its tenant's state lives elsewhere); the
        worker stops instead if partitions were added (``PartitionGuard.misrouted``)."""
        guard = self.guard
        if guard is None:
            return {}
        found = [m for m in batch if misplaced(m, guard.partitions) is not None]
        if not found:
            return {}
        reasons = await guard.misrouted(found)
        return {(m.partition, m.offset): reason for m, reason in zip(found, reasons, strict=True)}

    def _answer(
        self, msg: Any, known: Partition[State], letters: list[DeadLetter], misrouted: str | None = None
    ) -> list[Outgoing]:
        """Step 3 for one command: its outcome records, or none (skipped, duplicate, dead letter)."""
        kind = self.kind
        if msg.offset <= known.last_input:
            return []

        def refuse(reason: str) -> list[Outgoing]:
            if msg.offset in known.dead:  # a letter is written once (Step 4)
                log.info(
                    "%s: %s[%d]@%d is in the DLQ already", kind.name, msg.topic, msg.partition, msg.offset
                )
            else:
                letters.append(dead_letter_of(msg, reason, kind.name, kind.commands))
            return []

        if misrouted is not None:
            log.warning(
                "%s: dead-lettering %s[%d]@%d: %s", kind.name, msg.topic, msg.partition, msg.offset, misrouted
            )
            return refuse(misrouted)
        try:
            event = decode_input(msg.value, msg.key, kind.commands)
        except DecodeError as exc:
            return refuse(exc.reason)
        not_tenant = subject_not_tenant(event)
        if not_tenant is not None:
            return refuse(not_tenant)
        command_id = command_id_of(event)
        first = known.answered.get(command_id)
        if first is not None:
            self._duplicate(msg, command_id, first)
            return []
        try:
            command = kind.command_of(event)
            now = known.now(command.tenant, self._clock())
            changes = kind.decide(known.state(command.tenant), command, now)
            out = self._append(known, msg.partition, msg.offset, changes, event.trace_id)
        except Exception as exc:  # a command that cannot be decided must not stop the partition
            log.exception("%s: deciding %s[%d]@%d failed", kind.name, msg.topic, msg.partition, msg.offset)
            return refuse(evaluation_failed(exc))
        if msg.offset in known.dead:
            log.warning(
                "%s: %s[%d]@%d is named by a dead letter in the DLQ, yet it was decided: the letter was "
                "written from outside (or deciding it no longer raises); the command is answered",
                kind.name,
                msg.topic,
                msg.partition,
                msg.offset,
            )
        known.answer(command_id, msg.offset)
        return out

    def _append(
        self,
        known: Partition[State],
        p: int,
        input_offset: int | None,
        changes: list[Change],
        trace_id: str | None,
    ) -> list[Outgoing]:
        """Fold ``changes`` in and chain their records per tenant. An outcome's id comes from its
        command's id, or, if the command has none, from its position here (``input_offset`` in
        input partition ``p``: ``versioned.outcome_event_id``)."""
        out = []
        source = None if input_offset is None else CommandSource(self.input_topic, p, input_offset)
        for change in changes:
            known.tenants[change.tenant] = self.kind.evolve(known.state(change.tenant), change)
            unchained = self.kind.record_of(change, trace_id=trace_id, source=source)
            record = chain(unchained, known.heads.get(change.tenant))
            known.heads[change.tenant] = head_after(record)
            known.stamped(record)
            out.append(Outgoing(p, input_offset, change.tenant.encode(), codec.encode(record)))
            self._unreported.append((record, known.state(change.tenant)))
        return out

    def _duplicate(self, msg: Any, command_id: str, first: int) -> None:
        """A command id answered before at input offset ``first``: log it (and count it)."""
        log.warning(
            "%s: %s[%d]@%d repeats command %s answered at input offset %d: duplicate delivery, "
            "not decided again",
            self.kind.name,
            msg.topic,
            msg.partition,
            msg.offset,
            command_id,
            first,
        )

    def _appended(self, record: Event, state: State) -> None:
        """Called for each outcome record appended, once the broker acknowledged it (metrics)."""
