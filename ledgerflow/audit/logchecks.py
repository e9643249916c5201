"""Replaying the logs through the pure checks (chains, decisions, training): the I/O half.

1. Fix the horizon: end offsets of the derived topics first, then of their inputs, so
   every decision below the horizon has its input below it too.
2. Read ``policy.rules``: every rule pack ever published, by (tenant, version).
3. Read ``training.audit``: verify its chains, fold it, check every transition.
4. Read ``usage.windows``: verify its chains.
5. For each partition *p*: read ``conversation.events`` *p* (the turns), then
   ``policy.decisions`` *p*: verify its chains and re-derive every decision.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from ledgerflow.agents.reference import apply_reference_event, builtin_default_pack
from ledgerflow.audit.chains import ChainCheck
from ledgerflow.audit.decisions import DecisionCheck, PackBook
from ledgerflow.audit.progress import Progress
from ledgerflow.audit.report import Finding, Report
from ledgerflow.audit.sources import Horizon, LogReader
from ledgerflow.audit.training import TrainingCheck
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import Event
from ledgerflow.errors import DecodeError
from ledgerflow.logs import RawRecord
from ledgerflow.policy import RulePack, TrainingState
from ledgerflow.projections.ops import Position
from ledgerflow.topics import (
    CONVERSATION_EVENTS,
    POLICY_DECISIONS,
    POLICY_RULES,
    TRAINING_AUDIT,
    USAGE_WINDOWS,
)

ProgressFactory = Callable[[str, int], Progress]


async def audit_logs(settings: Settings, report: Report, progress: ProgressFactory) -> None:
    names = {
        base: settings.topic(base)
        for base in (POLICY_DECISIONS, TRAINING_AUDIT, USAGE_WINDOWS, POLICY_RULES, CONVERSATION_EVENTS)
    }
    async with LogReader(settings) as reader:
        horizon = await reader.horizon(names.values())  # Step 1.
        for base, topic in names.items():
            if topic not in horizon:
                report.notes.append(f"topic {topic} does not exist: nothing of {base} was checked")
        bar = progress("replaying logs", sum(sum(ends) for ends in horizon.values()))
        run = _Run(reader, horizon, report, bar, names)
        book = await run.packs()  # Step 2.
        training = await run.training()  # Step 3.
        await run.chained_only(USAGE_WINDOWS)  # Step 4.
        await run.decisions(book, training)  # Step 5.
        for finding in run.chains.finish():
            report.add(finding)
        bar.finish()
    report.checks += ["hash chains", "decisions", "training transitions"]


class _Run:
    def __init__(
        self, reader: LogReader, horizon: Horizon, report: Report, bar: Progress, names: dict[str, str]
    ) -> None:
        self.reader, self.horizon, self.report, self.bar, self.names = reader, horizon, report, bar, names
        self.chains = ChainCheck()

    async def records(self, base: str, partition: int) -> AsyncIterator[tuple[RawRecord, Event]]:
        """One partition's decodable records; undecodable ones on agent topics become findings."""
        topic = self.names[base]
        async for raw in self.reader.partition(topic, partition, self.horizon[topic][partition]):
            self.bar.advance()
            if raw.value is None:
                continue  # a tombstone (compacted topics)
            try:
                event = codec.decode(raw.value, allowed_types=TOPIC_TYPES[base])
            except DecodeError as exc:
                self.report.count(f"{base} undecodable")
                if base in (POLICY_DECISIONS, TRAINING_AUDIT, USAGE_WINDOWS):
                    self.report.add(_undecodable(raw, exc.reason))
                continue
            yield raw, event

    def partitions(self, base: str) -> range:
        return range(len(self.horizon.get(self.names[base], [])))

    async def packs(self) -> PackBook:
        history: dict[tuple[str, int], RulePack] = {}
        packs: dict[str, RulePack] = {}
        training: dict[str, TrainingState] = {}
        for p in self.partitions(POLICY_RULES):
            async for _, event in self.records(POLICY_RULES, p):
                apply_reference_event(event, packs, history, training)
        self.report.count("rule packs", len(history))
        return PackBook(history, builtin_default_pack())

    async def training(self) -> TrainingCheck | None:
        if self.names[TRAINING_AUDIT] not in self.horizon:
            return None
        check = TrainingCheck()
        for p in self.partitions(TRAINING_AUDIT):
            async for raw, event in self.records(TRAINING_AUDIT, p):
                at = _at(raw)
                self.report.add(self.chains.feed(at, event))
                self.report.add(check.feed(at, event))
        self.report.count("training records", check.records)
        return check

    async def chained_only(self, base: str) -> None:
        for p in self.partitions(base):
            async for raw, event in self.records(base, p):
                self.report.add(self.chains.feed(_at(raw), event))
                self.report.count(f"{base} records")

    async def decisions(self, book: PackBook, training: TrainingCheck | None) -> None:
        check = DecisionCheck(book, None if training is None else training.states)
        count = max(len(self.partitions(CONVERSATION_EVENTS)), len(self.partitions(POLICY_DECISIONS)))
        for p in range(count):
            if p in self.partitions(CONVERSATION_EVENTS):
                async for raw, event in self.records(CONVERSATION_EVENTS, p):
                    check.add_input(_at(raw), event, raw.value or b"")
            if p in self.partitions(POLICY_DECISIONS):
                async for raw, event in self.records(POLICY_DECISIONS, p):
                    at = _at(raw)
                    self.report.add(self.chains.feed(at, event))
                    self.report.extend(check.feed(at, event, raw.value or b""))
            self.report.extend(check.finish())
        self.report.count("turns", check.turns)
        self.report.count("decisions", check.decisions)
        self.report.count("decisions re-derived", check.verified)
        if check.pending:
            self.report.count("turns pending", check.pending)
            self.report.notes.append(
                f"{check.pending} turn(s) after the last decided one have no decision yet: the policy agent "
                "has not reached them (not a discrepancy; audit again once it caught up)"
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
