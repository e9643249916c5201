"""``ledgerflow dlq replay``: put dead letters back on their source topic, each once, traceably.

Sequence:
1. Read the DLQ of ``--topic`` and keep the letters the filters select (reason code, key,
   DLQ offset).
2. Find the letters already replayed: records of the source partitions, from the oldest
   selected letter's source offset on, whose ``lf-replay-of`` header names a letter.
3. Decide each letter (``plan``, pure): replay it, or skip it saying why — it names a position
   its source topic cannot hold (written from outside), already replayed, only a prefix kept, or
   it still does not decode (the cause is not fixed;
   ``--force`` replays it anyway, and it is dead-lettered again). A letter that is itself the
   product of a forced replay (its headers carry ``lf-replay-of``) and still does not decode is
   forced again only when ``--offset`` names it: a blanket ``--force`` run repeated (by hand or
   by a script) would otherwise send every such record round once more per run.
4. Unless ``--dry-run``: produce each one to its source topic and partition with the
   original key and headers plus ``lf-replay-of: <dlq topic>[<partition>]@<offset>``. A
   ``misrouted`` turn goes to the partition its key belongs in instead (``destination``): put
   back where it was, it would be refused again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.errors import DecodeError, NotFound, ValidationError
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.deadletters import LocatedDeadLetter, no_letter_message, scan_dead_letters
from ledgerflow.kafka.placement import MISROUTED, placement
from ledgerflow.topics import AGENT_WRITTEN, DLQ_SUFFIX

REPLAY_HEADER = "lf-replay-of"
REPLAY, SKIP = "replay", "skip"
CLOCK_SLACK_MS = 3_600_000
"""How far before a misrouted letter's ``failed_at`` its replay is looked for (a replaying host's
clock may be behind the worker's that dead-lettered it)."""


@dataclass(frozen=True, slots=True)
class Filters:
    reason: str | None = None  # a reason code, e.g. invalid-envelope
    key: str | None = None
    offset: int | None = None  # the DLQ offset (`dlq list` prints it)


@dataclass(frozen=True, slots=True)
class Step:
    """One letter's fate: ``replay`` or ``skip`` (``why`` says why), and where it went."""

    located: LocatedDeadLetter
    action: str
    why: str
    replayed_at: tuple[int, int] | None = None  # (partition, offset) in the source topic

    @property
    def tag(self) -> str:
        return replay_tag(self.located)


def replay_tag(x: LocatedDeadLetter) -> str:
    """The ``lf-replay-of`` value naming a dead letter: ``<dlq topic>[<partition>]@<offset>``."""
    return f"{x.dlq_topic}[{x.dlq_partition}]@{x.dlq_offset}"


def selected(letters: Iterable[LocatedDeadLetter], f: Filters) -> list[LocatedDeadLetter]:
    out = []
    for x in letters:
        if f.offset is not None and x.dlq_offset != f.offset:
            continue
        if x.letter is None:  # an unreadable DLQ record: listed (and skipped) unless filtered out
            if f.reason is None and f.key is None:
                out.append(x)
            continue
        if f.reason is not None and x.letter.reason_code != f.reason:
            continue
        if f.key is not None and x.letter.key != f.key.encode():
            continue
        out.append(x)
    return out


def replayed_from(letter: DeadLetter) -> str | None:
    """Pure: the ``lf-replay-of`` tag ``letter``'s record carried — the record was itself a replay
    (dead-lettered again) — or None."""
    for name, value in letter.headers:
        if name == REPLAY_HEADER and value:
            return value.decode(errors="replace")
    return None


def impossible_position(letter: DeadLetter, partitions: Mapping[str, int]) -> str | None:
    """Pure: why ``letter`` names a position its source topic cannot hold (a partition outside its
    count, a negative offset: a letter written into the DLQ from outside), or None."""
    count = partitions.get(letter.source_topic)
    if count is not None and 0 <= letter.partition < count and letter.offset >= 0:
        return None
    held = f"{count} partitions" if count is not None else "a partition count not known"
    return (
        f"it names {letter.source_topic}[{letter.partition}]@{letter.offset}, which the topic cannot hold "
        f"({held}, offsets from 0): not written by an agent"
    )


def plan(
    letters: Sequence[LocatedDeadLetter],
    already: dict[str, tuple[int, int]],
    still_poison: Callable[[DeadLetter], str | None],
    *,
    force: bool = False,
    named: bool = False,
    partitions: Mapping[str, int] | None = None,
) -> list[Step]:
    """Step 3 (pure): what happens to each letter. ``named``: the letters were picked by their DLQ
    offset (``--offset``), the one way to force a letter a forced replay produced. ``partitions``
    (count per source topic): a letter naming a position outside them is skipped."""
    steps = []
    chosen: set[tuple[str, int, int]] = set()  # source records replayed by this run
    for x in letters:
        letter = x.letter
        done = already.get(replay_tag(x))
        if letter is None:
            steps.append(Step(x, SKIP, f"the DLQ record itself does not decode ({x.problem})"))
        elif not _own_source(x):  # written from outside
            other = f"it names another source topic ({letter.source_topic!r}) than its DLQ's"
            steps.append(Step(x, SKIP, other))
        elif partitions is not None and (nowhere := impossible_position(letter, partitions)) is not None:
            steps.append(Step(x, SKIP, nowhere))
        elif done is not None:
            steps.append(Step(x, SKIP, f"already replayed as {letter.source_topic}[{done[0]}]@{done[1]}"))
        elif letter.value_truncated or letter.key_truncated or letter.headers_dropped:
            steps.append(
                Step(x, SKIP, "the dead letter kept only part of the record; send it again at the producer")
            )
        elif (poison := still_poison(letter)) is not None and not force:
            steps.append(Step(x, SKIP, f"still does not decode ({poison}); fix the cause first, or --force"))
        elif poison is not None and not named and (earlier := replayed_from(letter)) is not None:
            again = (
                f"still does not decode ({poison}); it was forced once already (as {earlier}) and "
                f"dead-lettered again: fix the cause first, or force it once more by name: "
                f"--offset {x.dlq_offset} --force"
            )
            steps.append(Step(x, SKIP, again))
        elif (source := (letter.source_topic, letter.partition, letter.offset)) in chosen:
            steps.append(Step(x, SKIP, "another dead letter of the same record is replayed by this run"))
        else:
            chosen.add(source)
            steps.append(Step(x, REPLAY, "decodes now" if poison is None else f"forced; still {poison}"))
    return steps


def destination(letter: DeadLetter, partitions: Mapping[str, int]) -> int:
    """Pure: the partition ``letter`` is replayed to (``partitions``: count per source topic): its
    source partition, or for a ``misrouted`` turn the one Kafka's default partitioner gives its key."""
    count = partitions.get(letter.source_topic)
    if letter.reason_code == MISROUTED and letter.key is not None and count:
        return placement(letter.key, count)
    return letter.partition


def decode_problem(letter: DeadLetter, topic_prefix: str) -> str | None:
    """Why the letter's value would be refused again today (None: it decodes)."""
    base = letter.source_topic.removeprefix(topic_prefix)
    try:
        codec.decode(letter.value, allowed_types=TOPIC_TYPES.get(base))
    except DecodeError as exc:
        return exc.reason
    return None


async def replay(
    settings: Settings,
    topic: str,
    filters: Filters,
    *,
    dry_run: bool,
    force: bool,
    advance: Callable[[], None] = lambda: None,
) -> list[Step]:
    """Steps 1–4; ``advance`` is called after each record produced (progress)."""
    refuse_agent_topic(topic)
    scan = await scan_dead_letters(settings, topic)
    if scan.missing:
        raise ValidationError(f"no DLQ topic {scan.missing[0]}: nothing was ever dead-lettered from {topic}")
    if filters.offset is not None and all(x.dlq_offset != filters.offset for x in scan.letters):
        raise NotFound(no_letter_message(scan.read[0], topic, filters.offset))
    letters = selected(scan.letters, filters)  # Step 1.
    already = await replayed(settings, letters, counts := await _counts(settings, letters))  # Step 2.
    steps = plan(  # Step 3.
        letters,
        already,
        lambda d: decode_problem(d, settings.topic_prefix),
        force=force,
        named=filters.offset is not None,
        partitions=counts,
    )
    if dry_run or not any(s.action == REPLAY for s in steps):
        return steps
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    out = []
    try:
        for step in steps:  # Step 4.
            letter = step.located.letter
            if step.action != REPLAY or letter is None:
                out.append(step)
                continue
            headers = [(k, v if v is not None else b"") for k, v in letter.headers]
            headers.append((REPLAY_HEADER, step.tag.encode()))
            meta = await producer.send_and_wait(
                letter.source_topic,
                letter.value,
                key=letter.key,
                partition=destination(letter, counts),
                headers=headers,
            )
            out.append(Step(step.located, REPLAY, step.why, (meta.partition, meta.offset)))
            advance()
    finally:
        await producer.stop()
    return out


def refuse_agent_topic(topic: str) -> None:
    """Pure: ValidationError for a topic only ledgerflow writes (``topics.AGENT_WRITTEN``). Its dead
    letters are the projector's refusals — forged, altered or unchained records — and they decode:
    replayed, each went back into the agents' hash-chained log as a record no agent wrote (the
    audit reports it), was refused and dead-lettered again, and the next replay put it back."""
    base = topic.removesuffix(DLQ_SUFFIX)
    if base in AGENT_WRITTEN:
        raise ValidationError(
            f"dlq replay --topic {base}: only ledgerflow's agents write {base}; a record put back there "
            "would be one they did not write (the audit reports it). Its dead letters are records "
            f"refused as forged or broken: read them with `ledgerflow dlq list --topic {base}`"
        )


async def _counts(settings: Settings, letters: Sequence[LocatedDeadLetter]) -> dict[str, int]:
    """The partition count of each source topic of ``letters`` (one line if a topic is gone), of the
    letters that name their DLQ's source topic: another (a letter written from outside) is skipped
    by ``plan``, and a topic it made up must not fail the run."""
    topics = sorted({x.letter.source_topic for x in letters if x.letter is not None and _own_source(x)})
    return await partition_counts(settings, topics) if topics else {}


def _own_source(x: LocatedDeadLetter) -> bool:
    """Pure: whether the letter names its DLQ's source topic."""
    return x.letter is not None and x.letter.source_topic == x.dlq_topic.removesuffix(DLQ_SUFFIX)


async def replayed(
    settings: Settings, letters: Sequence[LocatedDeadLetter], counts: Mapping[str, int]
) -> dict[str, tuple[int, int]]:
    """Step 2: ``lf-replay-of`` tag → (partition, offset) of its replay, in the partitions the
    letters are replayed to (``destination``), from each letter's source offset on (a misrouted
    letter's replay is in another partition: from the time it was dead-lettered on)."""
    starts: dict[TopicPartition, int] = {}
    since: dict[TopicPartition, int] = {}  # by time (ms), for misrouted letters
    for x in letters:
        if (
            (letter := x.letter) is None
            or not _own_source(x)
            or impossible_position(letter, counts) is not None
        ):
            continue  # no replay of it can exist (``plan`` skips it); asked for, the partition never answers
        tp = TopicPartition(letter.source_topic, destination(letter, counts))
        if tp.partition == letter.partition:
            starts[tp] = min(starts.get(tp, letter.offset), letter.offset)
        else:
            at = max(0, letter.failed_at // 1000 - CLOCK_SLACK_MS)
            since[tp] = min(since.get(tp, at), at)
    if not starts and not since:
        return {}
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    found: dict[str, tuple[int, int]] = {}
    try:
        if since:
            for tp, hit in (await consumer.offsets_for_times(since)).items():
                if hit is not None:  # None: nothing written there since; no replay to look for
                    starts[tp] = min(starts.get(tp, hit.offset), hit.offset)
        if not starts:
            return {}
        consumer.assign(list(starts))
        ends = await consumer.end_offsets(list(starts))
        firsts = await consumer.beginning_offsets(list(starts))
        for tp, start in starts.items():
            # A replay lands after its original; a source offset beyond the end means the topic
            # was recreated or truncated since: then look at all of it.
            starts[tp] = start if firsts[tp] <= start < ends[tp] else firsts[tp]
            consumer.seek(tp, starts[tp])
        pending = {tp for tp in starts if ends[tp] > starts[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                for rec in records:
                    for name, value in rec.headers or ():
                        if name == REPLAY_HEADER and value:
                            found[value.decode(errors="replace")] = (tp.partition, rec.offset)
                    if rec.offset >= ends[tp] - 1:
                        pending.discard(tp)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
    finally:
        await consumer.stop()
    return found


def format_steps(steps: Sequence[Step], *, dry_run: bool) -> str:
    """One line per letter and a total (pure)."""
    if not steps:
        return "no dead letter matches"
    lines = []
    for s in steps:
        where = f" -> [{s.replayed_at[0]}]@{s.replayed_at[1]}" if s.replayed_at else ""
        verb = ("would replay" if dry_run else "replayed") if s.action == REPLAY else "skipped"
        lines.append(f"{s.tag}  {verb}{where}: {s.why}")
    n = sum(1 for s in steps if s.action == REPLAY)
    lines.append(f"{n} of {len(steps)} dead letter(s) {'would be ' if dry_run else ''}replayed")
    return "\n".join(lines)


def steps_json(steps: Sequence[Step], *, dry_run: bool) -> list[dict[str, object]]:
    return [
        {
            "dead_letter": s.tag,
            "action": s.action,
            "why": s.why,
            "dry_run": dry_run,
            "source_topic": s.located.letter.source_topic if s.located.letter else None,
            "replayed_partition": s.replayed_at[0] if s.replayed_at else None,
            "replayed_offset": s.replayed_at[1] if s.replayed_at else None,
        }
        for s in steps
    ]
