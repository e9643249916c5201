"""Reference data every worker reads in full: rule packs, training state and model registry per tenant.

``policy.rules``, ``training.audit`` and ``models.audit`` are small, so each worker reads all their
partitions from the beginning with one consumer (no consumer group) and keeps the
latest pack, training state and model registry per tenant in memory. ``sync()`` waits until it has read
everything that was in the log when it was called: a pack acknowledged by Kafka before a
batch starts is the pack that batch uses. It fails (TimeoutError) only when no record has been
checked or applied for ``stall_s`` (``STALL_S``, 10 s) while the reader is behind, never because
the log is long: ``policy.rules`` is kept forever, and 81 valid packs of about 213 KB from one
tenant took longer to check than the fixed 10 s ``start`` once allowed, so every fresh edge and
worker failed to start.
A wait longer than ``PROGRESS_EVERY_S`` logs one progress line that often (records and bytes
read, share of the end). ``start`` (reading from offset 0, then ``sync``) stops the readers an
earlier ``start`` opened, and its own if it fails, so a retried start leaves no consumer open.

A rule pack's check (schema, canonical JSON, hash, signature: about 0.13 s for a pack of 100
rules of 190 keywords, mostly the JSON Schema) runs for each fetched batch in a worker thread
(``admit_records``), so the event loop keeps serving; the batch's records are then applied
strictly in log order on the loop. Only the pack each tenant ends a batch with is compiled: an
older version in the same batch is superseded before anything reads it, and is kept as text in
``PackHistory`` (compiled if ever read).

A ``policy.rules`` record that cannot be used (it does not decode, its key is not its
tenant, it is too large, its document is not a valid pack, or its signature is missing or
does not verify against the policy trust store — ``policy/signing.py``) is refused: the
pack in force stays, and, when the reader was given an ``on_refused`` handler (the
worker's policy agent passes one that dead-letters it and counts it in
``ledgerflow_policy_packs_refused_total{reason}``), the handler is awaited — retried with
backoff until it succeeds — before the reader moves past the record, so no refusal goes
unrecorded.

A ``training.audit`` or ``models.audit`` record is folded (into the training state, the model
registry, and the outcomes ``wait_outcome`` answers a command with) only if it is the training or
models agent's own by the rule their recovery uses (``contracts/outcome_trust.untrusted_reason``):
the next link of its tenant's chain on that topic (sequence, ``prev_hash``, content hash; the
reader keeps a chain head per topic and tenant, from offset 0), read from the partition the
tenant's records belong in: the agent answers a command into the partition of its input, where
Kafka's default partitioner put it by its tenant key (``kafka/placement.py``, under the partition
count the worker group pinned for the co-partitioned command topic, or today's when none is
pinned). Anything else — a record written straight to Kafka, unchained, mis-linked, re-hashed
wrongly, a replayed copy, or a correctly linked one in another partition of the topic (read first,
it would become the tenant's head and the real chain's next record would be refused) — is logged
(the first ``SKIPS_LOGGED`` one by one with topic, partition, offset and reason, then a count at each
power of ten) and skipped: it changes no state, head or outcome. Taken on trust, one forged
``TrainingEnabled`` changed what every policy agent decided with and the edge showed, and a
forged outcome carrying a command id answered the admin's request. ``start`` folds from offset 0
afresh (heads, rule packs and audit state reset), so a restarted reader trusts exactly what a new
one would, and a re-created topic's packs, not the deleted log's, are in force.

A topic that vanishes under the reader (deleted, or a broker back without it) is dropped from its
consumer at the first metadata answer that lacks it (``kafka/vanished.py``): left assigned, its
partitions made aiokafka ask for metadata in a loop without backoff, logging thousands of lines a
second. ``sync`` then fails with ``TopicsMissing`` (503 naming it); the reader looks for the topic
again (``REATTACH_FIRST_S`` doubling to ``REATTACH_CAP_S``) and, once it exists, reads all three
topics afresh from offset 0, as ``start`` does: the topic is a new log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.inputs import decode_input
from ledgerflow.contracts.outcome_trust import untrusted_reason
from ledgerflow.contracts.payloads import (
    RulePackPublished,
    TrainingDisabled,
    TrainingEnabled,
    TrainingExpired,
)
from ledgerflow.errors import DecodeError, InfrastructureError, LedgerflowError, TopicsMissing
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.logs import stop_reader
from ledgerflow.kafka.placement import Placements, misplaced_reason, pinned_placements_of
from ledgerflow.kafka.policy_trust import PolicyTrust
from ledgerflow.kafka.vanished import assignment_presence, on_metadata
from ledgerflow.models import ModelRegistry, check_transition, evolve, initial_registry
from ledgerflow.models.wire import event_of as model_event_of
from ledgerflow.policy import (
    CheckedPack,
    ModelCatalog,
    RulePack,
    TrainingState,
    check_rule_pack_text,
    parse_rule_pack,
)
from ledgerflow.policy.signing import HASH_MISMATCH, KeyLookup, SignatureRefused, Signed, verify
from ledgerflow.policy.wire import head_after
from ledgerflow.retry import delay
from ledgerflow.topics import MODELS_AUDIT, POLICY_RULES, TRAINING_AUDIT

log = logging.getLogger(__name__)

DEFAULT_TENANT = "*"
MAX_OUTCOMES = 10_000
OFF = TrainingState(enabled=False, version=0)
REFUSAL_RETRY_CAP_S = 5.0
SKIPS_LOGGED = 20
"""Untrusted audit records logged one by one per reader; after that a count at each power of ten."""
STALL_S = 10.0
"""How long ``start``/``sync`` wait without a record checked or applied while the reader is behind
the log's end before they give up: a long log is read to its end however long that takes, a
stuck reader fails."""
REATTACH_FIRST_S, REATTACH_CAP_S = 1.0, 30.0
"""Waits between looks for a vanished topic: 1 s doubling to 30 s (one admin request each)."""
PROGRESS_EVERY_S = 5.0
"""While a catch-up runs longer than this, one progress line is logged this often (a warning: the
process is not ready meanwhile, and the edge and the worker show warnings by default)."""


@dataclass(frozen=True, slots=True)
class RefusedRecord:
    """A ``policy.rules`` record the reader refused, with the attributes a dead letter needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    reason: str
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(slots=True)
class CatchUp:
    """One wait of ``sync``: the log ends it waits for, from where, and when the reader last
    moved. Pure bookkeeping (no I/O), so the stall and progress rules are unit-tested."""

    begin: dict[TopicPartition, int]
    ends: dict[TopicPartition, int]
    stall_s: float
    started: float
    moved: int
    moved_at: float = -1.0
    logged_at: float | None = None
    every_s: float = PROGRESS_EVERY_S

    def __post_init__(self) -> None:
        self.moved_at = self.started

    def done(self, position: Mapping[TopicPartition, int]) -> bool:
        return all(position.get(tp, -1) >= end for tp, end in self.ends.items() if end > 0)

    def poll_s(self) -> float:
        """How long to wait for the reader before looking at its progress again."""
        return max(0.01, min(1.0, self.stall_s / 4))

    def observe(self, moved: int, now: float) -> None:
        """The reader has applied or checked ``moved`` records in all: any new one is progress."""
        if moved != self.moved:
            self.moved, self.moved_at = moved, now

    def stalled(self, now: float) -> bool:
        return now - self.moved_at > self.stall_s

    def log_due(self, now: float) -> bool:
        last = self.started if self.logged_at is None else self.logged_at
        if now - last < self.every_s:
            return False
        self.logged_at = now
        return True

    def percent(self, position: Mapping[TopicPartition, int]) -> float:
        """How much of what lay between the start positions and the ends has been read."""
        total = sum(max(0, end - self.begin.get(tp, 0)) for tp, end in self.ends.items())
        read = sum(
            max(0, min(position.get(tp, 0), end) - self.begin.get(tp, 0)) for tp, end in self.ends.items()
        )
        return 100.0 if total == 0 else 100.0 * read / total

    def line(self, position: Mapping[TopicPartition, int], records: int, read_bytes: int, now: float) -> str:
        """One progress line: records and bytes read so far, the share of the end, the time taken."""
        state = "caught up" if self.done(position) else "catching up"
        return (
            f"{state}: {records} records ({read_bytes / 1e6:.1f} MB) read, "
            f"{self.percent(position):.0f}% of the log's end, {now - self.started:.0f} s"
        )

    def stalled_line(self, position: Mapping[TopicPartition, int], records: int, read_bytes: int) -> str:
        return (
            f"no record checked or applied for {self.stall_s:g} s while behind the log's end "
            f"({records} records, {read_bytes / 1e6:.1f} MB read, "
            f"{self.percent(position):.0f}% of the end)"
        )


RefusalHandler = Callable[[RefusedRecord], Awaitable[None]]


def builtin_default_pack() -> RulePack:
    """The pack in force before anyone publishes one for ``*`` (recorded as version 0)."""
    text = (resources.files("ledgerflow.policy") / "builtin_default.json").read_text()
    return parse_rule_pack(text)


class ReferenceData:
    def __init__(
        self,
        settings: Settings,
        on_refused: RefusalHandler | None = None,
        trust: PolicyTrust | None = None,
        placements: Mapping[str, Placements] | None = None,
        stall_s: float = STALL_S,
    ) -> None:
        """``placements``: where each audit topic (base name) holds a tenant's records; None: the
        worker group's pinned layout (else today's counts), asked at ``start``. ``stall_s``: how
        long ``start``/``sync`` wait without progress while behind (``STALL_S``)."""
        self._settings = settings
        self._stall_s = stall_s
        self._placements: dict[str, Placements] = dict(placements or {})
        self._placements_given = placements is not None
        self._on_refused = on_refused
        self._trust = trust or PolicyTrust.of(settings)
        self._topics = [
            settings.topic(POLICY_RULES),
            settings.topic(TRAINING_AUDIT),
            settings.topic(MODELS_AUDIT),
        ]
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self._caught_up = asyncio.Condition()
        self.packs: dict[str, RulePack] = {DEFAULT_TENANT: builtin_default_pack()}
        self.pack_history = PackHistory()
        self.training: dict[str, TrainingState] = {}
        self.models: dict[str, ModelRegistry] = {}
        self._catalogs: dict[str, ModelCatalog] = {}
        self._position: dict[TopicPartition, int] = {}
        self._ends: AIOKafkaConsumer | None = None
        self.outcomes: OrderedDict[str, Event] = OrderedDict()  # training command id -> audit record
        self._heads: dict[tuple[str, str], ChainHead] = {}  # (base topic, tenant) -> its chain head
        self.skipped = 0  # audit records not folded: not the agents' own
        self.applied = 0  # records read and applied (or refused, or skipped) since this reader was made
        self.read_bytes = 0  # their keys and values
        self.checked = 0  # rule packs checked off the event loop (progress within a batch too)
        self._closed = False
        self._missing: set[str] = set()  # topics dropped from the consumer: they do not exist
        self._looks = 0  # looks for them so far
        self._look_at = 0.0  # monotonic time of the next look
        self._epoch = 0  # bumped at each change of the assignment (a poll under way is read again)
        self.reattach_backoff = (REATTACH_FIRST_S, REATTACH_CAP_S)

    @property
    def trust(self) -> PolicyTrust:
        return self._trust

    def pack_for(self, tenant: str) -> RulePack:
        return self.packs.get(tenant) or self.packs[DEFAULT_TENANT]

    def training_for(self, tenant: str) -> TrainingState:
        return self.training.get(tenant, OFF)

    def registry_for(self, tenant: str) -> ModelRegistry:
        return self.models.get(tenant) or initial_registry(tenant)

    def models_for(self, tenant: str) -> ModelCatalog:
        """What model rules read: the tenant's registry version and enabled models."""
        catalog = self._catalogs.get(tenant)
        if catalog is None:
            registry = self.registry_for(tenant)
            catalog = self._catalogs[tenant] = ModelCatalog(registry.version, registry.enabled_models())
        return catalog

    async def start(self) -> None:
        """Read the three topics from offset 0 and return once everything in them at call time is
        applied (``sync``: bounded by a lack of progress, not by the log's length). Readers an
        earlier ``start`` opened are stopped first, and this one's are stopped if it fails: a
        retried start (the policy agent retries every batch) leaves no consumer behind."""
        self._check_open()
        await self.stop()
        try:
            await self._open()
            await self.sync()
        except BaseException:
            await self.stop()
            raise

    async def _open(self) -> None:
        if not self._placements_given:
            audits = (TRAINING_AUDIT, MODELS_AUDIT)
            self._placements.update(await pinned_placements_of(self._settings, audits))
        counts = await partition_counts(self._settings, self._topics)
        consumer = self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        await consumer.start()
        await self._read_afresh(consumer, counts)
        self._missing.clear()  # all three exist (``partition_counts``): none is missing any more
        on_metadata(consumer, self._metadata_changed)  # stops with the consumer
        # The log ends are asked on a connection of their own: the broker answers one request per
        # connection at a time, so on the reader's they waited behind its long-polling fetch (up to
        # fetch_max_wait_ms, ~45 ms a batch on the policy agent's hot path).
        self._ends = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap, enable_auto_commit=False
        )
        await self._ends.start()
        self._task = asyncio.create_task(self._run(consumer), name="reference-data")
        self._check_open()  # closed while starting: ``start`` stops the readers it opened

    async def _read_afresh(self, consumer: AIOKafkaConsumer, counts: dict[str, int]) -> None:
        """Every partition of ``counts`` assigned and read from offset 0, the state built from it reset."""
        tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        await consumer.beginning_offsets(tps)  # first in the consumer's metadata: not dropped at once again
        consumer.assign(tps)
        self._epoch += 1
        await consumer.seek_to_beginning(*tps)
        # Read from offset 0 afresh: heads kept from an earlier read would refuse every link again,
        # and packs kept from it (a deleted policy.rules) stayed in force over the new log's lower versions.
        self._heads.clear()
        self.packs.clear()
        self.packs[DEFAULT_TENANT] = builtin_default_pack()
        self.pack_history.clear()
        self.training.clear()
        self.models.clear()
        self._catalogs.clear()
        self._position = {tp: await consumer.position(tp) for tp in tps}

    def _metadata_changed(self) -> None:
        """After each metadata answer: drop the partitions of topics no longer there, at once."""
        consumer = self._consumer
        if consumer is None:
            return
        found = assignment_presence(consumer)
        if not found.gone:
            return
        consumer.assign(list(found.kept))
        for tp in found.kept:
            consumer.seek(tp, self._position[tp])
        self._epoch += 1
        self._missing.update(found.missing_topics)
        self._looks, self._look_at = 0, time.monotonic() + self.reattach_backoff[0]
        log.warning(
            "reference data: topic %s missing (deleted, or its broker came back without it): stopped "
            "reading it; looking for it again every %g s at most",
            ", ".join(found.missing_topics),
            self.reattach_backoff[1],
        )

    def require_topics(self) -> None:
        """TopicsMissing (503 naming them) while topics the reader reads do not exist."""
        if self._missing:
            raise TopicsMissing(
                f"Kafka topic {', '.join(sorted(self._missing))} missing (deleted, or its broker came "
                "back without it): retry later"
            )

    async def _look_for_topics(self, consumer: AIOKafkaConsumer) -> None:
        """Once the missing topics exist again, read all three afresh (they are new logs)."""
        if not self._missing or time.monotonic() < self._look_at:
            return
        self._looks += 1
        first, cap = self.reattach_backoff
        self._look_at = time.monotonic() + delay(self._looks + 1, first, cap)
        try:
            async with asyncio.timeout(STALL_S):
                counts = await partition_counts(self._settings, self._topics)
                await self._read_afresh(consumer, counts)
        except Exception as exc:  # still missing, or the broker does not answer: look again later
            log.debug("reference data: %s still missing (%r)", sorted(self._missing), exc)
            return
        log.warning("reference data: topic %s exists again: reading afresh", ", ".join(sorted(self._missing)))
        self._missing.clear()

    async def stop(self) -> None:
        task, consumer, ends = self._task, self._consumer, self._ends
        self._task, self._consumer, self._ends = None, None, None
        try:
            await stop_reader(task, consumer)
        finally:
            if ends is not None:
                await ends.stop()

    async def close(self) -> None:
        """``stop`` for good, when a worker stops (``agents/shutdown.py``): a ``start`` under way
        or asked later raises instead of leaving its readers open."""
        self._closed = True
        await self.stop()

    def _check_open(self) -> None:
        if self._closed:
            raise InfrastructureError("reference data: the reader is closed (the worker is stopping)")

    async def sync(self, stall_s: float | None = None) -> None:
        """Wait until everything in the log at call time has been applied. Raises TimeoutError
        only when no record was checked or applied for ``stall_s`` (default: the reader's) while
        behind the end: a long log is read however long it takes, with a progress line every few
        seconds."""
        if self._ends is None:
            raise InfrastructureError("reference data: the reader is not running")
        self.require_topics()
        ends = await self._ends.end_offsets(list(self._position))
        moved = self.applied + self.checked
        watch = CatchUp(dict(self._position), ends, stall_s or self._stall_s, time.monotonic(), moved)
        while not watch.done(self._position):
            async with self._caught_up:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._caught_up.wait_for(lambda: watch.done(self._position)), watch.poll_s()
                    )
            now = time.monotonic()
            watch.observe(self.applied + self.checked, now)
            if watch.stalled(now):
                raise TimeoutError(
                    f"reference data: {watch.stalled_line(self._position, self.applied, self.read_bytes)}"
                )
            if watch.log_due(now):
                log.warning(
                    "reference data: %s", watch.line(self._position, self.applied, self.read_bytes, now)
                )
        if watch.logged_at is not None:  # the end of a catch-up that logged its progress
            log.warning(
                "reference data: %s",
                watch.line(self._position, self.applied, self.read_bytes, time.monotonic()),
            )

    async def _run(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            await self._look_for_topics(consumer)
            epoch = self._epoch
            try:
                batches = await consumer.getmany(timeout_ms=200)
            except Exception:
                log.exception("reference data: Kafka read failed; retrying")
                await asyncio.sleep(1.0)
                continue
            if epoch != self._epoch:  # the assignment changed while this poll waited: read it again
                for tp in consumer.assignment():
                    consumer.seek(tp, self._position[tp])
                continue
            for tp, records in batches.items():
                admissions = await self._admissions(tp.topic, records)
                for record in records:  # applied strictly in log order, on the event loop
                    reason = self._apply_guarded(
                        tp.topic,
                        record.key,
                        record.value,
                        tp.partition,
                        record.offset,
                        admissions.get(record.offset),
                    )
                    self.applied += 1
                    self.read_bytes += len(record.value or b"") + len(record.key or b"")
                    if reason is not None:
                        await self._refuse(
                            RefusedRecord(
                                tp.topic, tp.partition, record.offset, record.key, record.value, reason
                            )
                        )
            # The consumer's position, not the last record's offset + 1: training.audit and models.audit
            # are written in transactions, and a commit marker after the last record takes an offset.
            for tp in consumer.assignment():
                with contextlib.suppress(IllegalStateError):  # dropped meanwhile (a topic vanished)
                    self._position[tp] = await consumer.position(tp)
            async with self._caught_up:
                self._caught_up.notify_all()

    async def _admissions(self, topic: str, records: Sequence[Any]) -> dict[int, Admission]:
        """The checks of a batch's rule packs (schema, canonical JSON, hash, signature, compiling),
        run in a worker thread so the event loop keeps serving; applied afterwards, in order.
        A check that fails unforeseen is left to ``_apply_guarded`` (refused by the error's name)."""
        if topic != self._topics[0] or not records:
            return {}
        batch = [(r.offset, r.key, r.value) for r in records]
        try:
            return await asyncio.to_thread(admit_records, batch, self._trust.lookup, self._count_check)
        except Exception:
            log.exception("reference data: checking a batch of rule packs failed; checked one by one")
            return {}

    async def _refuse(self, refused: RefusedRecord) -> None:
        """Hand a refused record to ``on_refused``, retrying with backoff until it is recorded."""
        if self._on_refused is None:
            return
        delay = 0.2
        while True:
            try:
                await self._on_refused(refused)
                return
            except Exception as exc:  # Kafka down: the refusal must still be recorded
                log.warning("reference data: recording a refused record failed (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(REFUSAL_RETRY_CAP_S, delay * 2)

    def _count_check(self) -> None:
        """One rule pack checked (called from ``admit_records``' thread; only it writes the count)."""
        self.checked += 1

    def _apply_guarded(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int = -1,
        offset: int = -1,
        admission: Admission | None = None,
    ) -> str | None:
        """``_apply``, and a record it fails on in a way nobody foresaw is refused with the error's
        name (dead-lettered from ``policy.rules``, skipped elsewhere) instead of ending this task:
        a reader that died would leave every ``sync`` timing out and the hot path waiting on it."""
        try:
            return self._apply(topic, key, value, partition, offset, admission)
        except Exception as exc:
            log.exception("reference data: a record on %s could not be applied; refused", topic)
            return f"unreadable-reference-record: {type(exc).__name__}"

    def _apply(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int = -1,
        offset: int = -1,
        admission: Admission | None = None,
    ) -> str | None:
        """Fold one record (``partition``/``offset``: where it was read, for the log); the reason it
        was refused (``policy.rules`` only), or None. ``admission``: the record's pack already
        checked (``admit_records``), else it is checked here."""
        base = {self._topics[0]: POLICY_RULES, self._topics[1]: TRAINING_AUDIT}.get(topic, MODELS_AUDIT)
        try:
            if base == POLICY_RULES:
                event = decode_input(value, key, base)
            else:
                event = codec.decode(value or b"", allowed_types=TOPIC_TYPES[base])
        except DecodeError as exc:
            log.warning("reference data: skipping undecodable record on %s: %s", topic, exc.reason)
            return exc.reason if base == POLICY_RULES else None
        if base == POLICY_RULES:
            return apply_reference_event(
                event, self.packs, self.pack_history, self.training, self._trust.lookup, admission
            )
        chain = (base, event.tenant)
        why = misplaced_reason(event.tenant, partition, self._placements.get(base))
        why = why or untrusted_reason(event, self._heads.get(chain), None, 0)
        if why is not None:  # written from outside: it changes nothing (contracts/outcome_trust.py)
            self._skip(topic, partition, offset, why)
            return None
        if base == MODELS_AUDIT and not self._apply_model_event(event):
            return None  # as the models agent's recovery: a record that does not apply moves no head
        apply_reference_event(event, self.packs, self.pack_history, self.training, self._trust.lookup)
        self._heads[chain] = head_after(event)
        command_id = getattr(event.payload, "command_id", None)
        if command_id:
            self.outcomes[command_id] = event
            while len(self.outcomes) > MAX_OUTCOMES:
                self.outcomes.popitem(last=False)
        return None

    def _skip(self, topic: str, partition: int, offset: int, why: str) -> None:
        """Log an untrusted audit record, bounded: a flood of forgeries does not flood the log."""
        self.skipped += 1
        n = self.skipped
        if n <= SKIPS_LOGGED:
            log.warning(
                "reference data: %s[%d]@%d is not the agents' own (written from outside?); skipped: %s%s",
                topic,
                partition,
                offset,
                why,
                "" if n < SKIPS_LOGGED else " (further skipped records are counted, not logged one by one)",
            )
        elif str(n).rstrip("0") == "1":  # 100, 1000, 10000 …
            log.warning(
                "reference data: %d audit records skipped so far (not the agents' own); latest %s[%d]@%d: %s",
                n,
                topic,
                partition,
                offset,
                why,
            )

    def _apply_model_event(self, record: Event) -> bool:
        """Fold a trusted ``models.audit`` record; False if it is no legal transition (not applied)."""
        registry, event = self.registry_for(record.tenant), model_event_of(record)
        problem = check_transition(registry, event)
        if problem is not None:  # only the models agent writes the topic; the audit reports it
            log.error("reference data: illegal models.audit record ignored: %s", problem)
            return False
        self.models[record.tenant] = evolve(registry, event)
        self._catalogs.pop(record.tenant, None)
        return True

    async def wait_outcome(self, command_id: str, timeout: float) -> Event | None:
        """The ``training.audit`` / ``models.audit`` record answering ``command_id``, or None."""
        async with self._caught_up:
            try:
                await asyncio.wait_for(self._caught_up.wait_for(lambda: command_id in self.outcomes), timeout)
            except TimeoutError:
                return None
        return self.outcomes[command_id]


def apply_reference_event(
    event: Event,
    packs: dict[str, RulePack],
    history: MutableMapping[tuple[str, int], RulePack],
    training: dict[str, TrainingState],
    lookup: KeyLookup | None,
    admission: Admission | None = None,
) -> str | None:
    """Fold one record of ``policy.rules`` or ``training.audit`` into the reference maps;
    the reason a rule pack was refused (it stays out of the maps), else None. A pack is
    admitted only with a valid signature by a key ``lookup`` trusts (None: no trust store).
    ``admission``: the pack's check done beforehand (``admit_records``, off the event loop);
    one left uncompiled there (superseded in its batch) is kept in ``history`` only."""
    payload = event.payload
    if isinstance(payload, RulePackPublished):
        found = admission if admission is not None else admission_of(event, lookup)
        if found.refused is not None:
            return found.refused
        key = (event.subject, payload.version)
        if found.pack is None:
            assert found.checked is not None and found.signer is not None
            if isinstance(history, PackHistory):
                history.add_checked(key, found.checked, found.signer)
            else:
                history[key] = found.checked.compile().signed_by(found.signer)
            return None
        pack = found.pack
        history[key] = pack
        current = packs.get(event.subject)
        if current is None or (current.version or 0) <= payload.version:
            packs[event.subject] = pack
    elif isinstance(payload, TrainingEnabled):
        training[event.tenant] = TrainingState(enabled=True, version=payload.version)
    elif isinstance(payload, (TrainingDisabled, TrainingExpired)):
        training[event.tenant] = TrainingState(enabled=False, version=payload.version)
    return None


@dataclass(frozen=True, slots=True)
class Admission:
    """What checking one ``RulePackPublished`` found: why it is refused, or its checked document
    and signer — and its compiled pack, unless a newer version of the tenant's pack follows it
    in the same batch (then it never comes into force and is not compiled)."""

    refused: str | None = None
    checked: CheckedPack | None = None
    signer: str | None = None
    pack: RulePack | None = None


def admission_of(event: Event, lookup: KeyLookup | None, compile_pack: bool = True) -> Admission:
    """Check the ``RulePackPublished`` ``event`` (``admitted_document``), compiling it when asked;
    a refusal is logged and carries its reason."""
    payload = event.payload
    assert isinstance(payload, RulePackPublished)
    try:
        checked, signed = admitted_document(payload, lookup)
    except LedgerflowError as exc:
        log.error("rule pack %s v%s is invalid and ignored: %s", event.subject, payload.version, exc)
        return Admission(refused=f"invalid-rule-pack: {exc}")
    except SignatureRefused as exc:
        log.error("rule pack %s v%s is refused: %s", event.subject, payload.version, exc)
        return Admission(refused=str(exc))
    admission = Admission(checked=checked, signer=signed.kid)
    return compiled_admission(event, admission) if compile_pack else admission


def admit_records(
    records: Sequence[tuple[int, bytes | None, bytes | None]],
    lookup: KeyLookup | None,
    checked_one: Callable[[], None] | None = None,
) -> dict[int, Admission]:
    """The admission of every ``RulePackPublished`` among one batch of ``policy.rules`` records
    (offset, key, value), by offset; pure CPU work, run off the event loop. Only the admitted
    pack each tenant ends the batch with is compiled (the highest version, the later one of
    equals, as ``apply_reference_event`` folds them): the others are superseded before anything
    reads them, and a compile failure in the one kept refuses it (then the next-best is compiled).
    ``checked_one`` is called after each pack's check: progress a catch-up can see mid-batch."""
    checked: dict[int, tuple[Event, Admission]] = {}
    for offset, key, value in records:
        try:
            event = decode_input(value, key, POLICY_RULES)
        except DecodeError:
            continue  # refused with its reason when applied
        if isinstance(event.payload, RulePackPublished):
            checked[offset] = (event, admission_of(event, lookup, compile_pack=False))
            if checked_one is not None:
                checked_one()
    pending = dict(checked)
    found: dict[int, Admission] = {}
    while (chosen := newest_admitted(pending)) is not None:
        event, admission = pending.pop(chosen)
        compiled = found[chosen] = compiled_admission(event, admission)
        if compiled.refused is None:  # every other admitted one of this tenant is superseded
            pending = {o: (e, a) for o, (e, a) in pending.items() if e.subject != event.subject}
    return {offset: found.get(offset, admission) for offset, (_, admission) in checked.items()}


def compiled_admission(event: Event, admission: Admission) -> Admission:
    """``admission`` with its pack compiled, or refused if a pattern does not compile."""
    if admission.checked is None or admission.pack is not None:
        return admission
    try:
        return replace(admission, pack=admission.checked.compile().signed_by(admission.signer or ""))
    except LedgerflowError as exc:
        payload = event.payload
        version = payload.version if isinstance(payload, RulePackPublished) else "?"
        log.error("rule pack %s v%s is invalid and ignored: %s", event.subject, version, exc)
        return Admission(refused=f"invalid-rule-pack: {exc}")


def newest_admitted(checked: Mapping[int, tuple[Event, Admission]]) -> int | None:
    """The offset of an admitted pack that ends its tenant's batch: the highest version of the
    first tenant found, the later offset of equal versions; None if none is admitted."""
    best: dict[str, tuple[int, int]] = {}
    for offset, (event, admission) in sorted(checked.items()):
        payload = event.payload
        if admission.refused is None and isinstance(payload, RulePackPublished):
            mark = (payload.version, offset)
            if event.subject not in best or mark >= best[event.subject]:
                best[event.subject] = mark
    return next((offset for _, offset in best.values()), None)


def admitted_document(payload: RulePackPublished, lookup: KeyLookup | None) -> tuple[CheckedPack, Signed]:
    """The checked (not compiled) pack of a ``RulePackPublished`` record and its verified
    signature: shape, limits, constitution hash and signature are all checked before any
    pattern is compiled, so an unsigned or forged record costs no compiling. Raises
    ``LedgerflowError`` (invalid pack) or ``SignatureRefused`` (why it must not be trusted)."""
    checked = check_rule_pack_text(payload.document).with_version(payload.version)
    if payload.constitution_hash != checked.constitution_hash:
        raise SignatureRefused(
            HASH_MISMATCH,
            f"the record says constitution {payload.constitution_hash[:80]!r}, its document hashes to "
            f"{checked.constitution_hash}",
        )
    return checked, verify(payload.signature, checked.doc, lookup)


def admitted_pack(payload: RulePackPublished, lookup: KeyLookup | None) -> RulePack:
    """The pack of a ``RulePackPublished`` record, with its verified signer, compiled only
    once ``admitted_document`` has accepted it; raises as that does, or ``LedgerflowError``
    for a pattern that does not compile."""
    checked, signed = admitted_document(payload, lookup)
    return checked.compile().signed_by(signed.kid)


PACK_HISTORY_COMPILED = 16
"""Past versions ``PackHistory`` keeps compiled (most recently used); the others are text."""


class PackHistory(MutableMapping[tuple[str, int], RulePack]):
    """Every admitted version by (tenant, version), kept as canonical JSON, not compiled: a
    compiled pack holds its RE2 programs (up to ``packlimits.MAX_RE2_BYTES``), and every
    version ever published stayed in every worker and edge. Reading a version compiles it
    on demand; the last ``PACK_HISTORY_COMPILED`` read or added stay compiled."""

    def __init__(self, compiled: int = PACK_HISTORY_COMPILED) -> None:
        self._documents: dict[tuple[str, int], tuple[bytes, str | None]] = {}
        self._compiled: OrderedDict[tuple[str, int], RulePack] = OrderedDict()
        self._limit = compiled

    def __getitem__(self, key: tuple[str, int]) -> RulePack:
        pack = self._compiled.get(key)
        if pack is None:
            canonical, signer = self._documents[key]
            pack = parse_rule_pack(canonical)
            pack = pack.signed_by(signer) if signer is not None else pack
        self._keep(key, pack)
        return pack

    def __setitem__(self, key: tuple[str, int], pack: RulePack) -> None:
        self._documents[key] = (pack.canonical_json(), pack.signer_kid)
        self._keep(key, pack)

    def add_checked(self, key: tuple[str, int], checked: CheckedPack, signer: str | None) -> None:
        """Keep a version that was checked and admitted but not compiled (compiled when read)."""
        self._documents[key] = (checked.canonical, signer)
        self._compiled.pop(key, None)

    def __delitem__(self, key: tuple[str, int]) -> None:
        del self._documents[key]
        self._compiled.pop(key, None)

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(self._documents)

    def __len__(self) -> int:
        return len(self._documents)

    def compiled(self) -> int:
        """How many versions are held compiled now (at most the limit)."""
        return len(self._compiled)

    def _keep(self, key: tuple[str, int], pack: RulePack) -> None:
        self._compiled[key] = pack
        self._compiled.move_to_end(key)
        while len(self._compiled) > self._limit:
            self._compiled.popitem(last=False)
