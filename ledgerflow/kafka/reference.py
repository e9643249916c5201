"""Reference data every worker reads in full: rule packs, training state and model registry per tenant.

``policy.rules``, ``training.audit`` and ``models.audit`` are small, so each worker reads all their
partitions from the beginning with one consumer (no consumer group) and keeps the
latest pack, training state and model registry per tenant in memory. ``sync()`` waits until it has read
everything that was in the log when it was called: a pack acknowledged by Kafka before a
batch starts is the pack that batch uses.

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
afresh (heads and audit state reset), so a restarted reader trusts exactly what a new one would.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from importlib import resources

from aiokafka import AIOKafkaConsumer, TopicPartition

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
from ledgerflow.errors import DecodeError, InfrastructureError, LedgerflowError
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.logs import stop_reader
from ledgerflow.kafka.placement import Placements, misplaced_reason, pinned_placements_of
from ledgerflow.kafka.policy_trust import PolicyTrust
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
from ledgerflow.topics import MODELS_AUDIT, POLICY_RULES, TRAINING_AUDIT

log = logging.getLogger(__name__)

DEFAULT_TENANT = "*"
MAX_OUTCOMES = 10_000
OFF = TrainingState(enabled=False, version=0)
REFUSAL_RETRY_CAP_S = 5.0
SKIPS_LOGGED = 20
"""Untrusted audit records logged one by one per reader; after that a count at each power of ten."""


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
    ) -> None:
        """``placements``: where each audit topic (base name) holds a tenant's records; None: the
        worker group's pinned layout (else today's counts), asked at ``start``."""
        self._settings = settings
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
        self._closed = False

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
        self._check_open()
        if not self._placements_given:
            audits = (TRAINING_AUDIT, MODELS_AUDIT)
            self._placements.update(await pinned_placements_of(self._settings, audits))
        counts = await partition_counts(self._settings, self._topics)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=50
        )
        await consumer.start()
        tps = [TopicPartition(t, p) for t, n in counts.items() for p in range(n)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        # Read from offset 0 afresh: heads kept from an earlier read would refuse every link again.
        self._heads.clear()
        self.training.clear()
        self.models.clear()
        self._catalogs.clear()
        self._position = {tp: await consumer.position(tp) for tp in tps}
        self._consumer = consumer
        # The log ends are asked on a connection of their own: the broker answers one request per
        # connection at a time, so on the reader's they waited behind its long-polling fetch (up to
        # fetch_max_wait_ms, ~45 ms a batch on the policy agent's hot path).
        self._ends = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap, enable_auto_commit=False
        )
        await self._ends.start()
        self._task = asyncio.create_task(self._run(), name="reference-data")
        if self._closed:  # closed while starting: the readers this start opened are stopped too
            await self.stop()
            self._check_open()
        await self.sync()

    async def stop(self) -> None:
        try:
            await stop_reader(self._task, self._consumer)
        finally:
            if self._ends is not None:
                await self._ends.stop()

    async def close(self) -> None:
        """``stop`` for good, when a worker stops (``agents/shutdown.py``): a ``start`` under way
        or asked later raises instead of leaving its readers open."""
        self._closed = True
        await self.stop()

    def _check_open(self) -> None:
        if self._closed:
            raise InfrastructureError("reference data: the reader is closed (the worker is stopping)")

    async def sync(self, timeout: float = 10.0) -> None:
        """Wait until everything in the log at call time has been applied."""
        assert self._consumer is not None and self._ends is not None
        ends = await self._ends.end_offsets(list(self._position))

        def caught_up() -> bool:
            return all(self._position.get(tp, -1) >= end for tp, end in ends.items() if end > 0)

        async with self._caught_up:
            await asyncio.wait_for(self._caught_up.wait_for(caught_up), timeout)

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                batches = await self._consumer.getmany(timeout_ms=200)
            except Exception:
                log.exception("reference data: Kafka read failed; retrying")
                await asyncio.sleep(1.0)
                continue
            for tp, records in batches.items():
                for record in records:
                    reason = self._apply_guarded(
                        tp.topic, record.key, record.value, tp.partition, record.offset
                    )
                    if reason is not None:
                        await self._refuse(
                            RefusedRecord(
                                tp.topic, tp.partition, record.offset, record.key, record.value, reason
                            )
                        )
            # The consumer's position, not the last record's offset + 1: training.audit and models.audit
            # are written in transactions, and a commit marker after the last record takes an offset.
            for tp in self._position:
                self._position[tp] = await self._consumer.position(tp)
            async with self._caught_up:
                self._caught_up.notify_all()

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

    def _apply_guarded(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int = -1, offset: int = -1
    ) -> str | None:
        """``_apply``, and a record it fails on in a way nobody foresaw is refused with the error's
        name (dead-lettered from ``policy.rules``, skipped elsewhere) instead of ending this task:
        a reader that died would leave every ``sync`` timing out and the hot path waiting on it."""
        try:
            return self._apply(topic, key, value, partition, offset)
        except Exception as exc:
            log.exception("reference data: a record on %s could not be applied; refused", topic)
            return f"unreadable-reference-record: {type(exc).__name__}"

    def _apply(
        self, topic: str, key: bytes | None, value: bytes | None, partition: int = -1, offset: int = -1
    ) -> str | None:
        """Fold one record (``partition``/``offset``: where it was read, for the log); the reason it
        was refused (``policy.rules`` only), or None."""
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
                event, self.packs, self.pack_history, self.training, self._trust.lookup
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
) -> str | None:
    """Fold one record of ``policy.rules`` or ``training.audit`` into the reference maps;
    the reason a rule pack was refused (it stays out of the maps), else None. A pack is
    admitted only with a valid signature by a key ``lookup`` trusts (None: no trust store)."""
    payload = event.payload
    if isinstance(payload, RulePackPublished):
        try:
            pack = admitted_pack(payload, lookup)
        except LedgerflowError as exc:
            log.error("rule pack %s v%s is invalid and ignored: %s", event.subject, payload.version, exc)
            return f"invalid-rule-pack: {exc}"
        except SignatureRefused as exc:
            log.error("rule pack %s v%s is refused: %s", event.subject, payload.version, exc)
            return str(exc)
        history[(event.subject, payload.version)] = pack
        current = packs.get(event.subject)
        if current is None or (current.version or 0) <= payload.version:
            packs[event.subject] = pack
    elif isinstance(payload, TrainingEnabled):
        training[event.tenant] = TrainingState(enabled=True, version=payload.version)
    elif isinstance(payload, (TrainingDisabled, TrainingExpired)):
        training[event.tenant] = TrainingState(enabled=False, version=payload.version)
    return None


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
