"""``ledgerflow migrate``: the way out of a partition count that must change (docs/scaling.md).

A source generation with 3 partitions per topic is copied into a new prefix with 5: every input
record lands once, unchanged (key, value, headers, timestamp), where Kafka's default partitioner
puts its key among five, each conversation's records in their order; hostile records are copied
as they are. A worker on the new prefix then derives every decision again and the audit of the
new generation is clean. A second copy into the filled prefix, a copy onto the source itself and
a prefix Kafka would refuse are one line each, and write nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from ledgerflow.audit.cli import audit_cli
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.errors import ValidationError
from ledgerflow.kafka.admin import ensure_topics, partition_counts
from ledgerflow.kafka.logs import RawRecord, read_all
from ledgerflow.metrics import WORKER_METRICS_ENV
from ledgerflow.migrate import migrate, target_partition
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, TOPICS
from ledgerflow.traffic import publish
from tests.integration.clikit import run_cli
from tests.integration.test_crash import _events, _wait_settled
from tests.integration.test_partitions_added import _alter
from tests.support.processes import start

BEFORE, AFTER = 3, 5
GARBAGE = b"\x00not an event at all"


_MADE: list[str] = []


def _prefix() -> str:
    """A fresh prefix of the tests' shape (``tests/support/testtopics.py``), deleted after the test."""
    prefix = f"t{uuid.uuid4().hex[:10]}."
    _MADE.append(prefix)
    return prefix


@pytest.fixture(autouse=True)
def _drop_topics(stack: Settings) -> Iterator[None]:
    """Each test makes two to five generations of topics (~40 partitions each; a broker holds open
    files per partition): they go when it ends."""
    yield
    made, _MADE[:] = tuple(_MADE), []

    async def drop() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
        await admin.start()
        try:
            names = [n for n in await admin.list_topics() if n.startswith(made)]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()

    if made:
        asyncio.run(drop())


async def _hostile(settings: Settings) -> None:
    """Records written straight to Kafka: garbage with a key and a producer's header, garbage
    without a key."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        topic = settings.topic(CONVERSATION_EVENTS)
        await producer.send_and_wait(
            topic, GARBAGE, key=b"conv-garbage", headers=[("traceparent", b"00-ab-cd-01")]
        )
        await producer.send_and_wait(topic, GARBAGE + b"-unkeyed", key=None, partition=2)
    finally:
        await producer.stop()


def _by_key(records: list[RawRecord]) -> dict[bytes | None, list[bytes | None]]:
    """Each key's values in log order (one key lives in one partition)."""
    out: dict[bytes | None, list[bytes | None]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        out[r.key].append(r.value)
    return out


def _decided_again_and_audited(target: Settings, turns: int, tmp_path: Path) -> None:
    """A worker on the new prefix decides every turn exactly once; its audit is clean."""
    worker = start(
        target, "worker", "worker", log_dir=tmp_path / "logs", extra_env={WORKER_METRICS_ENV: "off"}
    )
    try:
        _wait_settled(target, turns, [worker], timeout=150)
    finally:
        worker.stop()
    decided = Counter(
        codec.decode(r.value).payload.input_event_id
        for r in asyncio.run(read_all(target, target.topic(POLICY_DECISIONS)))
    )
    assert len(decided) == turns and max(decided.values()) == 1, decided.most_common(3)
    code = audit_cli(target, json_out=str(tmp_path / "audit.json"), skip_projections=False, quiet=True)
    report = json.loads((tmp_path / "audit.json").read_text())
    assert code == 0, json.dumps(report["findings"][:5], indent=2)
    assert report["stats"]["decisions re-derived"] == turns


@pytest.mark.timeout(300)
def test_inputs_copied_to_five_partitions_are_decided_again_and_audit_clean(
    stack: Settings, tmp_path: Path
) -> None:
    source = stack.with_overrides(topic_prefix=_prefix())
    asyncio.run(ensure_topics(source, partitions=BEFORE))
    events, turns = _events(17, 900)
    asyncio.run(publish(source, iter(events), progress_every_s=0))
    asyncio.run(_hostile(source))
    target = source.with_overrides(topic_prefix=_prefix())
    seen: list[tuple[int, int | None]] = []

    done = asyncio.run(migrate(source, target.topic_prefix, AFTER, lambda n, total: seen.append((n, total))))

    copied = {t.base: t for t in done.topics}
    assert copied[CONVERSATION_EVENTS].records == len(events) + 2
    assert (copied[CONVERSATION_EVENTS].partitions_before, copied[CONVERSATION_EVENTS].partitions_after) == (
        3,
        5,
    )
    assert seen[-1] == (done.records, done.records), seen[-3:]
    counts = asyncio.run(partition_counts(target, [target.topic(t.base) for t in TOPICS]))
    assert {t.base: counts[target.topic(t.base)] for t in TOPICS} == {
        t.base: AFTER if t.partitions > 1 else 1 for t in TOPICS
    }
    before = asyncio.run(read_all(source, source.topic(CONVERSATION_EVENTS)))
    after = asyncio.run(read_all(target, target.topic(CONVERSATION_EVENTS)))

    def unchanged(r: RawRecord) -> tuple[object, ...]:
        return (r.key, r.value, r.headers, r.timestamp_ms)

    assert Counter(map(unchanged, after)) == Counter(map(unchanged, before)), (
        "a record was lost, doubled or changed"
    )
    source_partition = {(r.key, r.value): r.partition for r in before}
    misplaced = [
        r for r in after if r.partition != target_partition(r.key, source_partition[r.key, r.value], AFTER)
    ]
    assert not misplaced, misplaced[:3]
    assert _by_key(after) == _by_key(before), "a conversation's records changed order"
    assert len({r.partition for r in after}) == AFTER

    _decided_again_and_audited(target, turns, tmp_path)

    # Case: a second copy into the filled prefix is refused before a record is written.
    with pytest.raises(
        ValidationError, match=r"already holds [\d,]+ records .*delete the topics of the prefix"
    ):
        asyncio.run(migrate(source, target.topic_prefix, AFTER))
    assert len(asyncio.run(read_all(target, target.topic(CONVERSATION_EVENTS)))) == len(after)


@pytest.mark.timeout(300)
def test_the_way_out_of_partitions_added_to_live_topics(stack: Settings, tmp_path: Path) -> None:
    """Partitions added to the source (``kafka-topics --alter``) moved most conversations: their
    older turns are in one partition, their newer ones in another. The copy puts each
    conversation's records back in one partition, in the order they were published, and a worker
    on the new prefix decides every turn once; the audit of the new generation is clean."""
    source = stack.with_overrides(topic_prefix=_prefix())
    asyncio.run(ensure_topics(source, partitions=BEFORE))
    events, turns = _events(23, 900)
    asyncio.run(publish(source, iter(events[:450]), progress_every_s=0))
    asyncio.run(_alter(source, AFTER))
    asyncio.run(publish(source, iter(events[450:]), progress_every_s=0))  # a producer that sees five
    before = asyncio.run(read_all(source, source.topic(CONVERSATION_EVENTS)))
    split = {k for k in {r.key for r in before} if len({r.partition for r in before if r.key == k}) > 1}
    assert split, "no conversation moved: the test moved nothing"
    target = source.with_overrides(topic_prefix=_prefix())

    asyncio.run(migrate(source, target.topic_prefix, 4))

    after = asyncio.run(read_all(target, target.topic(CONVERSATION_EVENTS)))
    published: dict[bytes | None, list[bytes | None]] = defaultdict(list)
    for e in events:
        published[e.subject.encode()].append(codec.encode(e))
    in_log = _by_key(after)
    assert {k: [codec.decode(v).event_id for v in in_log[k]] for k in split} == {
        k: [codec.decode(v).event_id for v in published[k]] for k in split
    }, "a moved conversation's records are not in the order they were published"
    assert all(len({r.partition for r in after if r.key == k}) == 1 for k in split)
    _decided_again_and_audited(target, turns, tmp_path)


def test_records_written_during_the_copy_are_counted_then_copied_by_continue(stack: Settings) -> None:
    """The way to copy a big log with producers running: copy, stop them, ``--continue``."""
    source = stack.with_overrides(topic_prefix=_prefix())
    asyncio.run(ensure_topics(source, partitions=BEFORE))
    events = _events(29, 300)[0][:300]  # a slice of interleaved conversations: no worker reads them here
    asyncio.run(publish(source, iter(events[:200]), progress_every_s=0))
    late = threading.Thread(
        target=lambda: asyncio.run(publish(source, iter(events[200:250]), progress_every_s=0))
    )

    def progress(done: int, total: int | None) -> None:
        if late.ident is None:  # once, as the copy starts: a producer still running
            late.start()
            late.join()

    target = source.with_overrides(topic_prefix=_prefix())
    done = asyncio.run(migrate(source, target.topic_prefix, AFTER, progress))
    assert done.written_meanwhile == 50

    def copied() -> list[str]:
        return [
            codec.decode(r.value).event_id
            for r in asyncio.run(read_all(target, target.topic(CONVERSATION_EVENTS)))
        ]

    assert sorted(copied()) == sorted(e.event_id for e in events[:200])
    asyncio.run(publish(source, iter(events[250:]), progress_every_s=0))  # then the producers stop

    more = asyncio.run(migrate(source, target.topic_prefix, None, resume=True))
    assert (more.records, more.continued, more.written_meanwhile) == (100, True, 0)
    after = asyncio.run(read_all(target, target.topic(CONVERSATION_EVENTS)))
    assert Counter(codec.decode(r.value).event_id for r in after) == Counter(e.event_id for e in events)
    in_order: dict[bytes | None, list[str]] = defaultdict(list)
    for e in events:
        in_order[e.subject.encode()].append(e.event_id)
    assert {k: [codec.decode(v).event_id for v in vs] for k, vs in _by_key(after).items()} == in_order
    nothing = asyncio.run(migrate(source, target.topic_prefix, AFTER, resume=True))
    assert nothing.records == 0

    # Something else wrote into the new prefix: a continue would not know what it copied there.
    asyncio.run(_hostile(target))
    with pytest.raises(ValidationError, match=r"hold 302 records where the copies wrote 300"):
        asyncio.run(migrate(source, target.topic_prefix, None, resume=True))
    assert len(asyncio.run(read_all(target, target.topic(CONVERSATION_EVENTS)))) == 302  # nothing more


def test_a_record_as_large_as_the_broker_takes_is_copied_unchanged(stack: Settings) -> None:
    """Oversized for the agents (they dead-letter it: ``content-too-large`` or undecodable), not for
    Kafka: copied unchanged like any other record (the copy's producer leaves the limit to the
    broker, which took the record once already)."""
    source = stack.with_overrides(topic_prefix=_prefix())
    asyncio.run(ensure_topics(source, partitions=BEFORE))
    big = b"\xc3\x01" + bytes(1_000_000)

    async def write() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=source.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(source.topic(CONVERSATION_EVENTS), big, key=b"conv-big")
        finally:
            await producer.stop()

    asyncio.run(write())
    target = source.with_overrides(topic_prefix=_prefix())
    done = asyncio.run(migrate(source, target.topic_prefix, AFTER))
    assert done.records == 1
    (copied,) = asyncio.run(read_all(target, target.topic(CONVERSATION_EVENTS)))
    assert (copied.key, copied.value, copied.partition) == (
        b"conv-big",
        big,
        target_partition(b"conv-big", 0, AFTER),
    )


def test_refusals_are_one_line_and_write_nothing(stack: Settings) -> None:
    source = stack.with_overrides(topic_prefix=_prefix())
    asyncio.run(ensure_topics(source, partitions=BEFORE))
    asyncio.run(_hostile(source))

    onto_itself = run_cli(source, "migrate", "--to-prefix", source.topic_prefix)
    assert onto_itself.code == 2, onto_itself
    assert "is the source prefix" in onto_itself.one_line()

    illegal = run_cli(source, "migrate", "--to-prefix", "gen 2.")
    assert illegal.code == 2 and "takes only letters, digits" in illegal.one_line()

    nothing = run_cli(stack.with_overrides(topic_prefix=_prefix()), "migrate", "--to-prefix", _prefix())
    assert nothing.code == 1, nothing
    assert "nothing to copy" in nothing.one_line()

    # Topics of the new prefix that exist with another count: named, nothing copied into them.
    other = source.with_overrides(topic_prefix=_prefix())
    asyncio.run(ensure_topics(other, partitions=4))
    layout = run_cli(source, "migrate", "--to-prefix", other.topic_prefix, "--partitions", "5")
    assert layout.code == 2 and "already has topics of another layout" in layout.one_line(), layout
    assert not asyncio.run(read_all(other, other.topic(CONVERSATION_EVENTS)))

    zero = run_cli(source, "migrate", "--to-prefix", _prefix(), "--partitions", "0")
    assert zero.code == 2, zero

    never = run_cli(source, "migrate", "--to-prefix", _prefix(), "--continue")
    assert never.code == 2 and "no finished copy into" in never.one_line(), never

    ok = run_cli(source, "migrate", "--to-prefix", _prefix(), "--partitions", "2", "--json")
    assert ok.code == 0, ok
    result = json.loads(ok.out)
    assert result["topics"][CONVERSATION_EVENTS] == {"records": 2, "partitions": [BEFORE, 2]}
    assert result["written_meanwhile"] == 0
    from_elsewhere = run_cli(
        stack.with_overrides(topic_prefix=other.topic_prefix),
        "migrate",
        "--to-prefix",
        result["to_prefix"],
        "--continue",
    )
    assert from_elsewhere.code == 2 and "is a copy of the prefix" in from_elsewhere.one_line(), from_elsewhere
