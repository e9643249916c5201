"""``ledgerflow migrate``: copy the input logs into a new generation of topics (another prefix,
another partition count), for the workers there to derive everything else again.

Partitions cannot be added to live topics (docs/scaling.md#adding-partitions: most keys would
move, and what lives in one partition — a conversation's chain and order, a tenant's training
and registry state — would break), so a new partition count means a new generation of topics.
Sequence:

1. Check the prefixes: the new one is another, valid for Kafka topic names.
2. Fix the horizon: the end offsets of the source's input topics now (records written later are
   not copied: the summary counts any written meanwhile and says so; ``--continue`` copies them).
3. Create the new prefix's topics (every topic, its dead-letter topics too; multi-partition ones
   at ``--partitions``) and refuse unless every one of them is empty and co-partitioned topics
   have equal counts: a copy goes into empty topics only, so one that stopped half-way is never
   mixed with a second one (delete the new prefix's topics and run again).
4. Copy each input topic record by record: key, value, headers and timestamp unchanged, into the
   partition Kafka's default partitioner gives the key among the new count
   (``kafka.placement.placement``, the rule the agents check); a record without a key goes to its
   old partition modulo the new count. The source partitions are read side by side and merged by
   record timestamp, each partition in its log order (``LogReader.merged``): a key's records are
   in one partition unless partitions were added to the source — then a conversation that moved
   has its older records in one partition and its newer ones in another, and the merge puts them
   back in time order. One idempotent producer (acks=all) keeps each key's records in the order
   sent. Every record counts when the broker acknowledged it.
5. Commit the horizon as the group ``<new prefix>ledgerflow-migrate``'s offsets on the source
   topics, with a ``Checkpoint`` (the source prefix, the input records the copies wrote in all).
   ``--continue`` copies from those offsets to the end offsets then, after checking the new
   prefix's input topics hold exactly that many records (a copy stopped half-way — a fresh copy
   clears the checkpoint before its first record — or another writer there is refused). So a big
   log is copied while producers run, and only what came since waits for them to stop.

What is copied (``COPIED``) is what nothing derives: the turns, the rule packs, the training and
registry commands, the identity trail (chained per key, copied as written). Decisions, training
and registry outcomes, usage windows and dead letters are not: the workers on the new prefix
derive them again from the copies — a decision under the rule packs they hold then, an outcome
at the time they answer — and ``ledgerflow audit`` checks the new generation as any other.
Hostile records are copied as they are and refused again there as they were here. The old
generation stays readable for the auditors.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError, ValidationError
from ledgerflow.kafka.admin import commit_offsets, committed_with_metadata, ensure_topics, partition_counts
from ledgerflow.kafka.placement import placement
from ledgerflow.kafka.reader import LogReader
from ledgerflow.topics import (
    CONVERSATION_EVENTS,
    IDENTITY_AUDIT,
    MODELS_COMMANDS,
    POLICY_RULES,
    TRAINING_COMMANDS,
    all_topics,
    with_partitions,
)

COPIED = (POLICY_RULES, IDENTITY_AUDIT, TRAINING_COMMANDS, MODELS_COMMANDS, CONVERSATION_EVENTS)
"""The input logs, in the order they are copied (reference data first)."""
MAX_TOPIC_CHARS = 249  # Kafka's limit on a topic name
_LEGAL = re.compile(r"[A-Za-z0-9._-]*")
IN_FLIGHT = 5_000  # records sent before their acknowledgements are awaited
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # the broker's own limit decides; the source topic held the record

CHECKPOINT_GROUP = "ledgerflow-migrate"
"""After the new prefix: the group (no consumer joins it) whose committed offsets are the source
offsets a finished copy reached, with a ``Checkpoint`` as their metadata (``--continue``)."""

Progress = Callable[[int, int | None], None]
Offsets = dict[str, list[int]]  # full source topic name -> offset per partition


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What a finished copy leaves for the next ``--continue``: the source it copied and how many
    input records the copies wrote into the new prefix in all (checked against its topics, so a
    copy that stopped half-way, or anything else writing there, is never continued)."""

    source_prefix: str
    records: int

    def encode(self) -> str:
        return json.dumps({"lf-migrate": 1, "from": self.source_prefix, "records": self.records})

    @classmethod
    def decode(cls, text: str) -> Checkpoint | None:
        """Pure: the checkpoint in a commit's metadata; None if it is not one."""
        try:
            found = json.loads(text)
        except ValueError:
            return None
        if not isinstance(found, dict) or found.get("lf-migrate") != 1:
            return None
        source, records = found.get("from"), found.get("records")
        if not isinstance(source, str) or type(records) is not int or records < 0:
            return None
        return cls(source, records)


@dataclass(frozen=True, slots=True)
class Copied:
    """One input topic's copy."""

    base: str
    records: int
    partitions_before: int
    partitions_after: int


@dataclass(slots=True)
class Migration:
    target_prefix: str
    topics: list[Copied] = field(default_factory=list)
    seconds: float = 0.0
    written_meanwhile: int = 0
    """Records written to the source's input topics after the copy fixed its horizon: not copied."""
    continued: bool = False
    """A ``--continue``: the records after the previous copy's horizon."""

    @property
    def records(self) -> int:
        return sum(t.records for t in self.topics)

    def to_json(self) -> dict[str, object]:
        return {
            "to_prefix": self.target_prefix,
            "records": self.records,
            "seconds": round(self.seconds, 3),
            "written_meanwhile": self.written_meanwhile,
            "continued": self.continued,
            "topics": {
                t.base: {"records": t.records, "partitions": [t.partitions_before, t.partitions_after]}
                for t in self.topics
            },
        }


def summary(migration: Migration, source_prefix: str) -> str:
    """Pure: what was copied, and what to do next."""
    target = migration.target_prefix
    more = " more (written since the last copy)" if migration.continued else ""
    lines = [
        f"copied {migration.records:,} records{more} from the prefix {source_prefix!r} into {target!r} "
        f"in {migration.seconds:.1f} s:"
    ]
    for t in migration.topics:
        lines.append(
            f"  {t.base:<20} {t.records:>12,}  ({t.partitions_before} → {t.partitions_after} partitions)"
        )
    if migration.written_meanwhile:
        lines.append(
            f"warning: {migration.written_meanwhile:,} records were written to the source's input topics "
            f"while it was copied and are not in {target!r} yet: stop the producers, then copy them with "
            "--continue"
        )
    lines.append(
        f"next: start workers with LEDGERFLOW_TOPIC_PREFIX={target} (they derive the decisions, outcomes, "
        f"usage and read models again), `ledgerflow audit --topic-prefix {target}`, then move producers "
        "and edges to it"
    )
    return "\n".join(lines)


def check_prefixes(source: str, target: str) -> None:
    """Pure: ``target`` is a usable new topic prefix for a copy of ``source``'s logs."""
    if target == source:
        raise ValidationError(
            f"--to-prefix {target!r} is the source prefix: the copy goes into a new generation of topics"
        )
    if not _LEGAL.fullmatch(target):
        raise ValidationError(
            f"--to-prefix {target!r}: a Kafka topic name takes only letters, digits, '.', '_' and '-'"
        )
    longest = max(len(spec.base) for spec in all_topics())
    if len(target) + longest > MAX_TOPIC_CHARS:
        raise ValidationError(
            f"--to-prefix is {len(target)} characters: with {longest} of the longest topic name that is over "
            f"Kafka's {MAX_TOPIC_CHARS}"
        )


def target_partition(key: bytes | None, source_partition: int, partitions: int) -> int:
    """Pure: where a copied record goes among ``partitions``: its key's partition under Kafka's
    default partitioner; a record without a key, its old partition modulo the new count."""
    if key is None:
        return source_partition % partitions
    return placement(key, partitions)


def layout_problem(counts: dict[str, int], expected: dict[str, int]) -> str | None:
    """Pure: why the new prefix's partition counts (topic base -> count) are not ``expected``
    (what ``--partitions`` asks for, or the declared counts); None if they are."""
    for base, want in expected.items():
        have = counts.get(base)
        if have != want:
            return f"{base} has {have} partitions, not {want}"
    return None


def nonempty_problem(target_prefix: str, records: dict[str, int]) -> str | None:
    """Pure: the refusal of a copy into topics that already hold records (full name -> count)."""
    full = {name: n for name, n in records.items() if n}
    if not full:
        return None
    name, n = sorted(full.items())[0]
    more = f" (and {len(full) - 1} more topics)" if len(full) > 1 else ""
    return (
        f"{name} already holds {n:,} records{more}: a copy goes into empty topics only; delete the "
        f"topics of the prefix {target_prefix!r} (or choose another) and run again"
    )


async def migrate(
    source: Settings,
    target_prefix: str,
    partitions: int | None,
    progress: Progress | None = None,
    *,
    resume: bool = False,
) -> Migration:
    """Copy ``source``'s input logs into the topics of ``target_prefix`` (the module doc);
    ``resume``: only what was written after the previous finished copy (``--continue``)."""
    began = time.perf_counter()
    check_prefixes(source.topic_prefix, target_prefix)  # Step 1.
    target = source.with_overrides(topic_prefix=target_prefix)
    group = target_prefix + CHECKPOINT_GROUP
    async with LogReader(source) as reader:
        horizon = await reader.horizon([source.topic(base) for base in COPIED])  # Step 2.
        if source.topic(CONVERSATION_EVENTS) not in horizon:
            raise InfrastructureError(
                f"no topic {source.topic(CONVERSATION_EVENTS)} at {source.kafka_bootstrap}: nothing to copy "
                "(check LEDGERFLOW_TOPIC_PREFIX / --topic-prefix)"
            )
        if resume:  # Step 3.
            starts, before = await _checkpoint(source, target, group, horizon)
            counts = await _continuable(target, partitions, before)
        else:
            starts, before = {topic: [0] * len(ends) for topic, ends in horizon.items()}, 0
            counts = await _prepare(target, partitions)
            # A checkpoint left by an earlier copy into topics deleted since would be continued as if
            # it were this one's: none is valid until this copy finished.
            await commit_offsets(
                source,
                group,
                {TopicPartition(t, p): (0, "") for t in horizon for p in range(len(horizon[t]))},
            )
        total = sum(sum(ends) - sum(starts[topic]) for topic, ends in horizon.items())
        if progress is not None:
            progress(0, total)
        migration = Migration(target_prefix, continued=resume)
        producer = AIOKafkaProducer(
            bootstrap_servers=source.kafka_bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=MAX_REQUEST_BYTES,
        )
        try:
            await producer.start()
        except KafkaError as exc:
            raise InfrastructureError(f"the producer could not start: {exc!r}") from None
        copy = _Copy(producer, reader, progress, total)
        try:
            for base in COPIED:  # Step 4.
                name = source.topic(base)
                ends = horizon.get(name)
                if ends is None:
                    continue  # the source never had it (an older deployment): nothing to copy
                copied = await copy.topic(name, ends, starts[name], target.topic(base), counts[base])
                migration.topics.append(Copied(base, copied, len(ends), counts[base]))
        finally:
            await producer.stop()
        checkpoint = Checkpoint(source.topic_prefix, before + migration.records)
        await commit_offsets(
            source,
            group,
            {
                TopicPartition(topic, p): (end, checkpoint.encode())
                for topic, ends in horizon.items()
                for p, end in enumerate(ends)
            },
        )
        now = await reader.horizon(horizon)
        migration.written_meanwhile = sum(sum(now[t]) - sum(ends) for t, ends in horizon.items() if t in now)
    migration.seconds = time.perf_counter() - began
    return migration


async def _checkpoint(
    source: Settings, target: Settings, group: str, horizon: Offsets
) -> tuple[Offsets, int]:
    """The source offsets the previous finished copy into ``target`` reached (per topic of
    ``horizon``) and the input records it wrote there; ValidationError if there is none to continue."""
    committed = await committed_with_metadata(source, group)
    starts: Offsets = {topic: [0] * len(ends) for topic, ends in horizon.items()}
    found: set[Checkpoint | None] = set()
    for tp, (offset, metadata) in committed.items():
        checkpoint = Checkpoint.decode(metadata)
        if tp.topic in starts and tp.partition < len(starts[tp.topic]):
            found.add(checkpoint)
            starts[tp.topic][tp.partition] = offset
        elif checkpoint is not None:  # a copy of another source: named, not taken for none
            found.add(checkpoint)
    problem = checkpoint_problem(found, source.topic_prefix, target.topic_prefix)
    if problem is not None:
        raise ValidationError(problem)
    (checkpoint,) = found
    assert checkpoint is not None  # checkpoint_problem said so
    for topic, ends in horizon.items():
        for p, end in enumerate(ends):
            if starts[topic][p] > end:
                raise ValidationError(
                    f"{topic} partition {p} ends at {end}, before the {starts[topic][p]} the last copy "
                    "reached: the source is not the one copied; delete the new prefix's topics and copy again"
                )
    return starts, checkpoint.records


def checkpoint_problem(found: set[Checkpoint | None], source_prefix: str, target_prefix: str) -> str | None:
    """Pure: why the checkpoints read back (one per source partition committed; None: a commit that
    is no checkpoint, as a copy under way leaves) allow no ``--continue``; None if they do."""
    if not found or found == {None}:
        return (
            f"no finished copy into {target_prefix!r} to continue (the first copy did not finish, or never "
            "ran): run it without --continue into empty topics"
        )
    others = sorted({c.source_prefix for c in found if c is not None and c.source_prefix != source_prefix})
    if others:
        return (
            f"{target_prefix!r} is a copy of the prefix {others[0]!r}, not of "
            f"{source_prefix!r}: continue it with --topic-prefix {others[0]!r}"
        )
    if len(found) > 1:
        return f"the checkpoint of {target_prefix!r} is inconsistent: delete its topics and copy again"
    return None


async def _continuable(target: Settings, partitions: int | None, records: int) -> dict[str, int]:
    """The new prefix's input topics' partition counts, if it holds exactly the ``records`` the
    copies wrote there (ValidationError otherwise: a copy stopped half-way, or another writer)."""
    names = {base: target.topic(base) for base in COPIED}
    found = await partition_counts(target, list(names.values()))
    counts = {base: found[name] for base, name in names.items()}
    if partitions is not None:
        expected = {spec.base: spec.partitions for spec in with_partitions(all_topics(), partitions)}
        problem = layout_problem(counts, {base: expected[base] for base in COPIED})
        if problem is not None:
            raise ValidationError(
                f"--partitions {partitions}: {target.topic_prefix!r} was copied with another ({problem})"
            )
    async with LogReader(target) as reader:
        held = sum(sum(ends) for ends in (await reader.horizon(names.values())).values())
    if held != records:
        raise ValidationError(
            f"the input topics of {target.topic_prefix!r} hold {held:,} records where the copies wrote "
            f"{records:,}: a copy stopped half-way, or something else wrote there; delete its topics and "
            "copy again"
        )
    return counts


async def _prepare(target: Settings, partitions: int | None) -> dict[str, int]:
    """Create the new prefix's topics; its input topics' partition counts. Refuses (ValidationError)
    unless every topic of the prefix is empty and has the count asked for."""
    await ensure_topics(target, partitions=partitions)
    specs = with_partitions(all_topics(), partitions)
    names = {spec.base: target.topic(spec.base) for spec in specs}
    found = await partition_counts(target, list(names.values()))
    counts = {base: found[name] for base, name in names.items()}
    expected = {spec.base: spec.partitions for spec in specs}
    problem = layout_problem(counts, expected)
    if problem is not None:
        raise ValidationError(
            f"the prefix {target.topic_prefix!r} already has topics of another layout ({problem}): "
            "choose another prefix, or delete its topics"
        )
    async with LogReader(target) as reader:
        horizon = await reader.horizon(names.values())
    refusal = nonempty_problem(target.topic_prefix, {name: sum(ends) for name, ends in horizon.items()})
    if refusal is not None:
        raise ValidationError(refusal)
    return {base: counts[base] for base in COPIED}


class _Copy:
    """Copying partitions through one producer, counting what the broker acknowledged."""

    def __init__(
        self, producer: AIOKafkaProducer, reader: LogReader, progress: Progress | None, total: int
    ) -> None:
        self.producer, self.reader, self.progress, self.total = producer, reader, progress, total
        self.done = 0

    async def topic(self, topic: str, ends: list[int], starts: list[int], into: str, partitions: int) -> int:
        """Copy ``topic`` from ``starts`` up to ``ends`` into ``into`` (of ``partitions``); the records
        copied. A send or delivery that fails ends the copy in one line naming where it stopped."""
        pending: list[asyncio.Future[object]] = []
        copied, at = 0, "its start"
        try:
            async for raw in self.reader.merged(topic, ends, starts):
                at = f"partition {raw.partition} offset {raw.offset}"
                pending.append(
                    await self.producer.send(
                        into,
                        value=raw.value,
                        key=raw.key,
                        partition=target_partition(raw.key, raw.partition, partitions),
                        timestamp_ms=raw.timestamp_ms,
                        headers=list(raw.headers),
                    )
                )
                if len(pending) >= IN_FLIGHT:
                    copied += await self._acknowledged(pending)
            copied += await self._acknowledged(pending)
        except (KafkaError, OSError) as exc:
            raise InfrastructureError(
                f"copying {topic} failed near {at} ({type(exc).__name__}: {exc}); the new prefix holds "
                "part of the logs: delete its topics and run again"
            ) from None
        return copied

    async def _acknowledged(self, pending: list[asyncio.Future[object]]) -> int:
        """Wait for every acknowledgement of ``pending`` (then emptied); how many there were."""
        n = len(pending)
        await asyncio.gather(*pending)
        pending.clear()
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)
        return n
