"""Verified before projected, and counted once: forged decisions (altered, unlinked, about another
conversation) and duplicate turns written straight to Kafka (a producer bypassing the edge) against a
running worker."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ledgerflow.audit.cli import bars
from ledgerflow.audit.projections import audit_projections
from ledgerflow.audit.report import Report
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead, decision_chain_key, link
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.dlq import read_dead_letters
from ledgerflow.projections.keys import Keys
from ledgerflow.redisclient import sync_client
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS
from ledgerflow.traffic import interleaved, publish
from tests.support.processes import Process, pipeline_settled


def _settle(settings: Settings, turns: int, worker: Process) -> None:
    deadline = time.monotonic() + 120
    why = ""
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, worker.log_tail()
        done, why = asyncio.run(pipeline_settled(settings, turns))
        if done:
            return
        time.sleep(0.5)
    raise AssertionError(f"not settled: {why}\n{worker.log_tail()}")


async def _decisions(settings: Settings) -> list[tuple[int, Event]]:
    topic = settings.topic(POLICY_DECISIONS)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            tps = [TopicPartition(topic, p) for p in range(6)]
        ends = await consumer.end_offsets(tps)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        out: list[tuple[int, Event]] = []
        for tp in tps:
            while await consumer.position(tp) < ends[tp]:
                got = await consumer.getmany(tp, timeout_ms=1000)
                out += [(r.partition, codec.decode(r.value)) for r in got.get(tp, [])]
        return out
    finally:
        await consumer.stop()


async def _produce(settings: Settings, topic: str, events: list[Event], partition: int | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        for event in events:
            await producer.send_and_wait(
                settings.topic(topic), codec.encode(event), key=event.subject.encode(), partition=partition
            )
    finally:
        await producer.stop()


def _relinked(decision: Event, head: ChainHead, **changes: object) -> Event:
    """A decision with ``changes``, chained after ``head`` with a correct hash of its own."""
    payload = dataclasses.replace(decision.payload, **changes)  # type: ignore[type-var]
    bare = dataclasses.replace(decision, payload=payload, sequence=None, prev_hash=None, hash=None)
    linked = link(bare.to_json(), head)
    return bare.with_chain(linked["sequence"], linked["prev_hash"], linked["hash"])


def test_forged_decisions_are_quarantined_and_duplicate_turns_counted_once(
    settings: Settings, worker: Process
) -> None:
    events = list(interleaved(random.Random(4), ["acme"], 4, time.time_ns() // 1000, run_id="v"))
    turns = [e for e in events if e.type == "MessageSubmitted"]
    asyncio.run(publish(settings, iter(events), progress_every_s=0))
    _settle(settings, len(turns), worker)
    # Step 1: a turn delivered twice (same event_id, a second offset).
    again = turns[0]
    asyncio.run(_produce(settings, CONVERSATION_EVENTS, [again]))

    # Step 2: two forged decisions for a conversation, in its decisions partition.
    partition, last = max(
        (
            (p, d)
            for p, d in asyncio.run(_decisions(settings))
            if isinstance(d.payload, PolicyDecision) and d.payload.conversation_id == again.subject
        ),
        key=lambda pd: pd[1].sequence or 0,
    )
    assert last.sequence is not None and last.hash is not None
    # (a) content altered after hashing: the hash no longer matches.
    altered = dataclasses.replace(
        last, payload=dataclasses.replace(last.payload, outcome="deny", input_event_id=turns[-1].event_id)
    )
    # (b) a well-hashed decision that does not link to the last one (wrong prev_hash).
    forged = _relinked(
        last,
        ChainHead(decision_chain_key(last.tenant, last.subject), last.sequence, "f" * 64),
        outcome="deny",
        input_event_id=str(uuid.uuid4()),
    )
    # (c) well hashed and linked to the last one, but about another conversation: chained under one
    # conversation, projected into another (two slots on a Redis Cluster).
    other = next(t for t in turns if t.subject != again.subject)
    elsewhere = _relinked(
        last,
        ChainHead(decision_chain_key(last.tenant, last.subject), last.sequence, last.hash),
        outcome="deny",
        conversation_id=other.subject,
        input_event_id=other.event_id,
    )
    client = sync_client(settings.redis_url)
    keys = Keys.for_prefix(settings.topic_prefix)
    tenant_before = client.hgetall(keys.tenant("acme"))
    decisions_before = client.hgetall(keys.conversation_decisions("acme", again.subject))
    other_before = client.hgetall(keys.conversation_decisions("acme", other.subject))
    asyncio.run(_produce(settings, POLICY_DECISIONS, [altered, forged, elsewhere], partition=partition))
    _settle(settings, len(turns), worker)

    # Never reached the read models: counters and the conversation's decisions are unchanged.
    tenant_after = client.hgetall(keys.tenant("acme"))
    assert {k: v for k, v in tenant_after.items() if k.startswith(b"decisions_")} == {
        k: v for k, v in tenant_before.items() if k.startswith(b"decisions_")
    }
    assert client.hgetall(keys.conversation_decisions("acme", again.subject)) == decisions_before
    assert client.hgetall(keys.conversation_decisions("acme", other.subject)) == other_before
    # Recorded with their reason: the quarantine hash and the dead-letter topic.
    quarantined = client.hgetall(keys.conversation_quarantine("acme", again.subject))
    assert list(quarantined.values()) == [b"broken-link"]
    letters = [x.letter for x in asyncio.run(read_dead_letters(settings, POLICY_DECISIONS)) if x.letter]
    assert sorted(letter.reason_code for letter in letters) == [
        "chain-altered",
        "chain-broken-link",
        "chain-subject-mismatch",
    ]

    # The duplicate turn is counted once (conversation and tenant).
    per_conv = sum(1 for t in turns if t.subject == again.subject)
    assert int(client.hget(keys.conversation("acme", again.subject), "turns")) == per_conv
    assert client.llen(keys.conversation_turns("acme", again.subject)) == per_conv
    assert int(tenant_after[b"turns"]) == len(turns)

    # A rebuild from the log refuses and deduplicates exactly the same records.
    report = Report()
    asyncio.run(audit_projections(settings, report, bars(False)))
    assert report.clean, [str(f) for f in report.findings[:5]]
