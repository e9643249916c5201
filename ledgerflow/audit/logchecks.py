"""Replaying the logs through the pure checks (chains, decisions, training): the I/O half.

1. Fix the horizon: end offsets of the derived topics first, then of their inputs, so
   every decision below the horizon has its input below it too.
2. Read ``policy.rules``: every rule pack ever published, by (tenant, version), each verified
   against the policy trust store as the agents verify it (``audit/packs.py``).
3. Read ``training.audit``: verify its chains, fold it, check every transition; the same for
   ``models.audit`` (``audit/models.py``), keeping every registry version for step 6.
4. Read ``usage.windows`` and ``identity.audit``: verify their chains.
5. Read the dead letters of ``conversation.events`` and ``training.commands``: inputs the
   agents gave up on, with the reason, are accounted for (and counted), not missing.
6. For each partition *p*: read ``conversation.events`` *p* (the turns, decoded as the
   agents decode them), then ``policy.decisions`` *p*: verify its chains, re-derive every
   decision, and name every turn without one (``decision.missing``).
7. Read ``training.commands``: every command needs its outcome in ``training.audit``
   (``training.missing`` otherwise), once per command id: a later record repeating an
   answered command id in its partition is a duplicate delivery (counted, not a finding).
While reading ``conversation.events`` (step 6) the turns are also re-folded into usage
windows by event time (``audit/usage.py``): every window that fold closes needs its record
in ``usage.windows`` (``usage.missing``), with the worker's window settings
(``LEDGERFLOW_USAGE_WINDOW_S``, ``LEDGERFLOW_USAGE_LATENESS_S``), and every window written
must charge what its turns add up to (``usage.overcharged``, ``usage.undercharged``).
On every input topic (``conversation.events``, ``training.commands``, ``policy.rules``) a
record whose ``producer`` claims one of ledgerflow's own writers (``ledgerflow-*``) is an
``input.system-producer`` finding: only the agents write under those names, and never there.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractContextManager

from ledgerflow.audit.chains import ChainCheck
from ledgerflow.audit.decisions import DecisionCheck, PackBook, letters_name
from ledgerflow.audit.models import ModelsCheck
from ledgerflow.audit.packs import PackSignatures
from ledgerflow.audit.placement import misplaced_link, misplaced_outcome
from ledgerflow.audit.report import Finding, Report
from ledgerflow.audit.training import TrainingCheck
from ledgerflow.audit.usage import UsageCheck
from ledgerflow.commands.progress import Update
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.inputs import decode_input
from ledgerflow.envnumbers import env_number
from ledgerflow.errors import DecodeError, InfrastructureError
from ledgerflow.kafka.deadletters import read_dead_letters
from ledgerflow.kafka.logs import RawRecord
from ledgerflow.kafka.placement import Placements, pinned_placements, pinned_placements_of
from ledgerflow.kafka.policy_trust import PolicyTrust
from ledgerflow.kafka.reader import Horizon, LogReader
from ledgerflow.kafka.reference import apply_reference_event, builtin_default_pack
from ledgerflow.policy import RulePack, TrainingState
from ledgerflow.policy.signing import KeyLookup
from ledgerflow.projections.ops import Position
from ledgerflow.topics import (
    AGENT_WRITTEN,
    CONVERSATION_EVENTS,
    IDENTITY_AUDIT,
    MODELS_AUDIT,
    POLICY_DECISIONS,
    POLICY_RULES,
    TRAINING_AUDIT,
    TRAINING_COMMANDS,
    USAGE_WINDOWS,
    input_offset_of,
)
from ledgerflow.usage.settings import window_config_from

ProgressFactory = Callable[[str, int], AbstractContextManager[Update]]
"""One progress bar per phase (label, records in all): ``with progress(label, total) as update``."""

DRAW_EVERY = 1000  # records between progress updates: a redraw per record would cost more than the read


GRACE_ENV = "LEDGERFLOW_AUDIT_GRACE_S"
DEFAULT_GRACE_S = 60.0
"""A turn (or training command) written longer ago than this before the audit started must
have its decision (outcome), whether or not a later one was decided."""
INPUT_TOPICS = (CONVERSATION_EVENTS, TRAINING_COMMANDS, POLICY_RULES)
SYSTEM_PRODUCER_PREFIX = "ledgerflow-"


def grace_from_env() -> float:
    return grace_from(os.environ)


def grace_from(environ: Mapping[str, str]) -> float:
    """Pure: ``LEDGERFLOW_AUDIT_GRACE_S`` in seconds (0 or more, finite), default ``DEFAULT_GRACE_S``."""
    return env_number(environ, GRACE_ENV, DEFAULT_GRACE_S, 0)


async def audit_logs(
    settings: Settings, report: Report, progress: ProgressFactory, *, grace_s: float | None = None
) -> None:
    grace = grace_from_env() if grace_s is None else grace_s
    overdue_before_ms = int(time.time() * 1000 - grace * 1000)
    names = {
        base: settings.topic(base)
        for base in (
            POLICY_DECISIONS,
            TRAINING_AUDIT,
            USAGE_WINDOWS,
            POLICY_RULES,
            CONVERSATION_EVENTS,
            TRAINING_COMMANDS,
            MODELS_AUDIT,
            IDENTITY_AUDIT,
        )
    }
    async with LogReader(settings) as reader:
        horizon = await reader.horizon(names.values())  # Step 1.
        if not horizon:  # a typo in the prefix is not "1 discrepancy: projection.incomplete"
            raise InfrastructureError(
                f"no topic of the prefix {settings.topic_prefix!r} exists at {settings.kafka_bootstrap} "
                f"(looked for {names[CONVERSATION_EVENTS]} and the others): check LEDGERFLOW_TOPIC_PREFIX "
                "/ --topic-prefix"
            )
        for base, topic in names.items():
            if topic not in horizon:
                report.notes.append(f"topic {topic} does not exist: nothing of {base} was checked")
        with progress("replaying logs", sum(sum(ends) for ends in horizon.values())) as update:
            await _replay(_Run(reader, horizon, report, update, names, overdue_before_ms), settings)
    report.checks += [
        "hash chains",
        "decisions",
        "pack signatures",
        "training transitions",
        "model registry",
        "completeness",
    ]


async def _replay(run: _Run, settings: Settings) -> None:
    """Steps 2-7 (see the module doc)."""
    run.lookup = PolicyTrust.of(settings).lookup
    if run.names[CONVERSATION_EVENTS] in run.horizon:
        run.placements = await pinned_placements(settings, CONVERSATION_EVENTS)
    placed = (TRAINING_AUDIT, MODELS_AUDIT, USAGE_WINDOWS, IDENTITY_AUDIT)
    outcomes = [b for b in placed if run.names[b] in run.horizon]
    run.outcome_placements = await pinned_placements_of(settings, outcomes) if outcomes else {}
    book = await run.packs()  # Step 2.
    training = await run.training()  # Step 3.
    models = await run.models()
    await run.chained_only(USAGE_WINDOWS)  # Step 4.
    await run.chained_only(IDENTITY_AUDIT)
    await run.dead_letters(settings)  # Step 5.
    await run.decisions(book, training, models)  # Step 6.
    await run.commands()  # Step 7.
    for finding in run.chains.finish():
        run.report.add(finding)
    run.update(run.read)


class _Run:
    def __init__(
        self,
        reader: LogReader,
        horizon: Horizon,
        report: Report,
        update: Update,
        names: dict[str, str],
        overdue_before_ms: int | None = None,
    ) -> None:
        self.reader, self.horizon, self.report, self.update, self.names = (
            reader,
            horizon,
            report,
            update,
            names,
        )
        self.read = 0  # records read, for the progress bar
        self.chains = ChainCheck()
        self.overdue_before_ms = overdue_before_ms
        # base topic -> (partition, offset) -> the SHA-256s of the values its dead letters hold
        self.dead: dict[str, dict[tuple[int, int], set[str]]] = {}
        self.answered: dict[int, set[int]] = {}  # training.audit partition -> command offsets answered
        self.answered_commands: set[str] = set()  # command ids with an outcome in training.audit
        self.usage = UsageCheck(window_config_from(os.environ), overdue_before_ms)
        # Turns outside their conversation's partition: the usage agent does not count them either.
        self.placements: Placements | None = None
        # Outcomes outside their tenant's partition: neither the readers nor the projection take them.
        self.outcome_placements: dict[str, Placements] = {}
        self.lookup: KeyLookup | None = None
        self.signatures = PackSignatures()
        self.history: dict[tuple[str, int], RulePack] = {}

    async def records(self, base: str, partition: int) -> AsyncIterator[tuple[RawRecord, Event]]:
        """One partition's decodable records (``decoded``)."""
        topic = self.names[base]
        async for raw in self.reader.partition(topic, partition, self.horizon[topic][partition]):
            self._counted()
            event = self.decoded(base, raw)
            if event is not None:
                yield raw, event

    async def raws(self, base: str, partition: int) -> AsyncIterator[RawRecord]:
        """One partition's records as read, each to be ``decoded`` (or proved equal to a record
        the audit derived itself)."""
        topic = self.names[base]
        async for raw in self.reader.partition(topic, partition, self.horizon[topic][partition]):
            self._counted()
            yield raw

    def _counted(self) -> None:
        self.read += 1
        if self.read % DRAW_EVERY == 0:
            self.update(self.read)

    def decoded(self, base: str, raw: RawRecord) -> Event | None:
        """The record's event; None for an undecodable one, a finding on agent topics.

        Input topics are decoded as the agents decode them (size limit, key = subject); a
        record there that claims a system writer is a finding."""
        # No topic is compacted (topics.py), so a null value is no tombstone: it was written
        # from outside and is checked like any other value (undecodable).
        value = raw.value or b""
        try:
            if base in (CONVERSATION_EVENTS, TRAINING_COMMANDS):
                event = decode_input(value, raw.key, base)
            else:
                event = codec.decode(value, allowed_types=TOPIC_TYPES[base])
        except DecodeError as exc:
            self.report.count(f"{base} undecodable")
            if base in AGENT_WRITTEN:
                self.report.add(_undecodable(raw, exc.reason))
            return None
        if base in INPUT_TOPICS and event.producer.startswith(SYSTEM_PRODUCER_PREFIX):
            self.report.add(_system_producer(raw, event))
        return event

    def partitions(self, base: str) -> range:
        return range(len(self.horizon.get(self.names[base], [])))

    async def packs(self) -> PackBook:
        history: dict[tuple[str, int], RulePack] = {}
        packs: dict[str, RulePack] = {}
        training: dict[str, TrainingState] = {}
        for p in self.partitions(POLICY_RULES):
            async for raw, event in self.records(POLICY_RULES, p):
                refusal = apply_reference_event(event, packs, history, training, self.lookup)
                self.signatures.feed(_at(raw), event, refusal)
        self.report.count("rule packs", len(history))
        self.signatures.report(self.report)
        self.history = history
        return PackBook(history, builtin_default_pack())

    async def training(self) -> TrainingCheck | None:
        if self.names[TRAINING_AUDIT] not in self.horizon:
            return None
        check = TrainingCheck()
        placed = self.outcome_placements.get(TRAINING_AUDIT)
        for p in self.partitions(TRAINING_AUDIT):
            async for raw, event in self.records(TRAINING_AUDIT, p):
                at = _at(raw)
                if self.left_out("training", at, event, placed):
                    continue
                self.report.add(self.chains.feed(at, event))
                self.report.add(check.feed(at, event))
                answered = input_offset_of(raw.headers)
                if answered is not None:
                    self.answered.setdefault(p, set()).add(answered)
                    command_id = getattr(event.payload, "command_id", None)
                    if command_id:
                        self.answered_commands.add(command_id)
        self.report.count("training records", check.records)
        return check

    def left_out(self, check: str, at: Position, event: Event, placed: Placements | None) -> bool:
        """Whether ``event`` is an outcome outside its tenant's partition (``audit/placement.py``):
        named once, and left out of the chains and the fold."""
        finding = misplaced_outcome(check, at, event, placed)
        self.report.add(finding)
        return finding is not None

    async def models(self) -> ModelsCheck:
        """``models.audit``: chains, legal transitions, and every registry version for step 6."""
        check = ModelsCheck()
        placed = self.outcome_placements.get(MODELS_AUDIT)
        if self.names[MODELS_AUDIT] in self.horizon:
            for p in self.partitions(MODELS_AUDIT):
                async for raw, event in self.records(MODELS_AUDIT, p):
                    at = _at(raw)
                    if self.left_out("models", at, event, placed):
                        continue
                    self.report.add(self.chains.feed(at, event))
                    self.report.add(check.feed(at, event))
            self.report.count("model registry records", check.records)
        return check

    async def chained_only(self, base: str) -> None:
        # The usage agent writes a tenant's windows under its key, all in its partition, and reads
        # none back from elsewhere (agents/usage.py): one there is named and left out, so a forged
        # first link read from a lower partition does not make the genuine chain the finding.
        # identity.audit: each chain in its key's partition under the pinned count (a record
        # elsewhere is named and left out: audit/placement.misplaced_link).
        placed = self.outcome_placements.get(base) if base in (USAGE_WINDOWS, IDENTITY_AUDIT) else None
        for p in self.partitions(base):
            async for raw, event in self.records(base, p):
                if placed is not None and self._elsewhere(base, _at(raw), event, placed):
                    continue
                self.report.add(self.chains.feed(_at(raw), event))
                self.report.count(f"{base} records")
                if base == USAGE_WINDOWS:
                    self.usage.add_written(event, _at(raw))

    def _elsewhere(self, base: str, at: Position, event: Event, placed: Placements) -> bool:
        """Whether ``event`` of ``usage.windows`` or ``identity.audit`` is outside the partition
        its chain is written to (named once, and left out of the chains)."""
        if base == USAGE_WINDOWS:
            return self.left_out("usage", at, event, placed)
        finding = misplaced_link("identity", at, event, placed)
        self.report.add(finding)
        return finding is not None

    async def dead_letters(self, settings: Settings) -> None:
        """Step 5: the positions of the input topics the DLQ names, each with the SHA-256s of the
        values its letters hold (``decisions.letters_name``: a letter excuses only that record)."""
        for base in (CONVERSATION_EVENTS, TRAINING_COMMANDS):
            positions = self.dead.setdefault(base, {})
            if self.names[base] not in self.horizon:
                continue
            for located in await read_dead_letters(settings, base):
                letter = located.letter
                if letter is not None and letter.source_topic == self.names[base] and letter.value_sha256:
                    positions.setdefault((letter.partition, letter.offset), set()).add(letter.value_sha256)

    async def decisions(self, book: PackBook, training: TrainingCheck | None, models: ModelsCheck) -> None:
        check = DecisionCheck(
            book,
            None if training is None else training.states,
            overdue_before_ms=self.overdue_before_ms,
            models=models.catalogs,
        )
        dead = self.dead.get(CONVERSATION_EVENTS, {})
        count = max(len(self.partitions(CONVERSATION_EVENTS)), len(self.partitions(POLICY_DECISIONS)))
        for p in range(count):
            check.dead_lettered = {
                offset: digests for (partition, offset), digests in dead.items() if partition == p
            }
            if p in self.partitions(CONVERSATION_EVENTS):
                async for raw, event in self.records(CONVERSATION_EVENTS, p):
                    check.add_input(_at(raw), event, raw.value or b"", raw.timestamp_ms)
                    if self.placements is None or self.placements.belongs(raw.key, p):
                        self.usage.add_input(_at(raw), event, raw.timestamp_ms)
            if p in self.partitions(POLICY_DECISIONS):
                async for raw in self.raws(POLICY_DECISIONS, p):
                    value, answers = raw.value or b"", input_offset_of(raw.headers)
                    # Most decisions re-derive bit for bit from the previous one's pack and states:
                    # then the record is the one derived, and decoding it would only repeat it.
                    record = check.rederive_logged(value, answers) or self.decoded(POLICY_DECISIONS, raw)
                    if record is None:
                        continue
                    at = _at(raw)
                    self.report.add(self.signatures.decision(at, record, self.history))
                    self.report.extend(check.feed(at, record, value, answers))
                    # A decision outside its conversation's partition is forged (the agent writes
                    # each beside its input; `check` names it): left out of the chains, or a copy
                    # read first, from a lower partition, made the genuine records the finding.
                    if self.placements is None or self.placements.belongs(raw.key, p):
                        self.report.add(self.chains.feed(at, record, verified=check.rederived))
            self.report.extend(check.finish())
            missing_windows = self.usage.finish(p)
            if self.usage.comparable and self.names[USAGE_WINDOWS] in self.horizon:
                self.report.extend(missing_windows)
        if not self.usage.comparable:
            self.report.notes.append(
                "usage.windows was written with another window size than LEDGERFLOW_USAGE_WINDOW_S here: "
                "usage completeness not checked (run the audit with the worker's settings)"
            )
        else:
            if self.usage.windows_checked:
                self.report.count("usage windows closed by event time", self.usage.windows_checked)
            if self.usage.windows_totalled:
                self.report.count("usage windows totalled", self.usage.windows_totalled)
            if self.usage.windows_pending:
                self.report.count("usage windows pending", self.usage.windows_pending)
                self.report.notes.append(
                    f"{self.usage.windows_pending} usage window(s) are charged less than their turns give, "
                    "each with a turn newer than the grace period: the usage agent has not reached it yet "
                    "(not a discrepancy; audit again once it caught up)"
                )
        self.report.count("turns", check.turns)
        self.report.count("decisions", check.decisions)
        self.report.count("decisions re-derived", check.verified)
        if check.duplicate_deliveries:
            self.report.count("duplicate deliveries", check.duplicate_deliveries)
            self.report.notes.append(
                f"{check.duplicate_deliveries} turn record(s) repeat the event_id of an earlier turn in "
                "their partition: duplicate deliveries (a producer retrying past the edge), decided once "
                "(not a discrepancy)"
            )
        if check.decided_again:
            self.report.count("duplicate deliveries decided again", check.decided_again)
        if check.turns_dead_lettered:
            self.report.count("turns dead-lettered", check.turns_dead_lettered)
            self.report.notes.append(
                f"{check.turns_dead_lettered} turn(s) were dead-lettered by the policy agent instead of "
                "decided: see `ledgerflow dlq list --topic conversation.events`"
            )
        if check.pending:
            self.report.count("turns pending", check.pending)
            self.report.notes.append(
                f"{check.pending} turn(s) after the last decided one have no decision yet: the policy agent "
                "has not reached them (not a discrepancy; audit again once it caught up)"
            )

    async def commands(self) -> None:
        """Step 7: every training command has its outcome in training.audit."""
        if (
            self.names[TRAINING_COMMANDS] not in self.horizon
            or self.names[TRAINING_AUDIT] not in self.horizon
        ):
            return
        dead = self.dead.get(TRAINING_COMMANDS, {})
        commands = duplicates = 0
        for p in self.partitions(TRAINING_COMMANDS):
            pending = []
            answered = self.answered.get(p, set())
            last = max(answered, default=-1)
            async for raw, event in self.records(TRAINING_COMMANDS, p):
                commands += 1
                if raw.offset in answered or letters_name(dead.get((p, raw.offset)), raw.value or b""):
                    continue
                if getattr(event.payload, "command_id", None) in self.answered_commands:
                    duplicates += 1  # a duplicate delivery of a command answered at another offset
                    continue
                overdue = self.overdue_before_ms is not None and raw.timestamp_ms < self.overdue_before_ms
                if raw.offset < last or overdue:
                    self.report.add(_command_missing(raw, event))
                else:
                    pending.append(raw.offset)
            if pending:
                self.report.notes.append(
                    f"{len(pending)} training command(s) of partition {p} have no outcome yet "
                    "(not a discrepancy; audit again once the training agent caught up)"
                )
        self.report.count("training commands", commands)
        if duplicates:
            self.report.count("duplicate training commands", duplicates)
            self.report.notes.append(
                f"{duplicates} training command(s) repeat a command id answered at another offset: "
                "duplicate deliveries, answered once (not a discrepancy)"
            )


def _system_producer(raw: RawRecord, event: Event) -> Finding:
    return Finding(
        "input.system-producer",
        raw.topic,
        raw.partition,
        raw.offset,
        event.subject,
        f"producer {event.producer[:60]!r} claims one of ledgerflow's own writers on an input topic: "
        "only the agents write under ledgerflow-* names, and only to the topics they derive",
    )


def _command_missing(raw: RawRecord, event: Event) -> Finding:
    command_id = getattr(event.payload, "command_id", "?")
    return Finding(
        "training.missing",
        raw.topic,
        raw.partition,
        raw.offset,
        event.subject,
        f"{event.type} {command_id} has no outcome in training.audit (accepted or rejected)",
    )


def _at(raw: RawRecord) -> Position:
    return Position(raw.topic, raw.partition, raw.offset)


def _undecodable(raw: RawRecord, reason: str) -> Finding:
    key = (raw.key or b"").decode("utf-8", "replace")
    return Finding(
        "record.undecodable",
        raw.topic,
        raw.partition,
        raw.offset,
        key,
        f"{reason}: a record on a topic only ledgerflow's agents write must always decode",
    )
