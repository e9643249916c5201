"""``ledgerflow audit`` on the real stack: clean traffic passes; a forged decision, a record
altered in a copied log and a read-model key altered by hand are each located."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer

from ledgerflow.audit.cli import audit_cli, run_audit
from ledgerflow.audit.report import Report
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import compute_hash
from ledgerflow.contracts.events import derived_event_id
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.logs import read_all
from ledgerflow.redisclient import sync_client
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, POLICY_RULES
from ledgerflow.traffic import interleaved, publish
from tests.support.processes import Process, live_keys, pipeline_settled

CONVERSATIONS = 150


def _traffic(settings: Settings, worker: Process, conversations: int = CONVERSATIONS) -> int:
    """Publish interleaved conversations; wait until decided and projected; return the turn count."""
    events = list(
        interleaved(random.Random(11), ["acme", "globex", "initech"], conversations, time.time_ns() // 1000)
    )
    asyncio.run(publish(settings, iter(events), progress_every_s=0))
    turns = sum(1 for e in events if e.type == "MessageSubmitted")
    wait_settled(settings, turns, worker)
    return turns


def wait_settled(settings: Settings, turns: int, worker: Process | None, timeout: float = 180.0) -> None:
    """Until every turn has a decision and the live read models applied every record."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        settled, state = asyncio.run(pipeline_settled(settings, turns))
        if settled:
            return
        if worker is not None and worker.popen.poll() is not None:
            raise AssertionError(f"the worker exited with {worker.popen.returncode}:\n{worker.log_tail()}")
        time.sleep(0.5)
    tail = worker.log_tail() if worker is not None else ""
    raise AssertionError(f"not settled within {timeout:.0f} s: {state}\n{tail}")


def _audit(settings: Settings, *, projections: bool = True) -> Report:
    return asyncio.run(run_audit(settings, projections=projections, progress=False))


def audit_at_rest(settings: Settings) -> Report:
    """The audit, taken again if the live read models applied anything while it read them: its diff
    is exact only at rest, and usage windows close on the wall clock, not on this test's traffic."""

    def checkpoint() -> dict[bytes, bytes]:
        client = sync_client(settings.redis_url, socket_timeout=10)
        try:
            return dict(client.hgetall(live_keys(client, settings).checkpoint("read-models")))
        finally:
            client.close()

    for _ in range(3):
        before = checkpoint()
        report = _audit(settings)
        if checkpoint() == before:
            return report
    raise AssertionError("the live read models kept changing during every audit")


def _positions(report: Report) -> set[tuple[str, str, int | None, int | None]]:
    return {(f.kind, f.topic, f.partition, f.offset) for f in report.findings}


def test_audit_of_untouched_traffic_is_clean_and_writes_a_json_report(
    settings: Settings, worker: Process, tmp_path: Path
) -> None:
    turns = _traffic(settings, worker)
    out = tmp_path / "audit.json"
    began = time.perf_counter()
    code = audit_cli(settings, json_out=str(out), skip_projections=False, quiet=True)
    seconds = time.perf_counter() - began
    report = json.loads(out.read_text())
    assert code == 0, json.dumps(report["findings"][:5], indent=2)
    assert report["clean"] is True and report["discrepancies"] == 0 and report["findings"] == []
    assert report["stats"]["turns"] == report["stats"]["decisions"] == turns
    assert report["stats"]["decisions re-derived"] == turns
    assert report["stats"]["read-model entities compared"] > CONVERSATIONS
    assert report["checks"] == [
        "hash chains",
        "decisions",
        "pack signatures",
        "training transitions",
        "model registry",
        "completeness",
        "read models",
    ]
    assert seconds < 60, f"audit of {turns} turns took {seconds:.1f} s"
    assert not _scratch_keys(settings), "the audit left its scratch key space behind"


def test_forged_decision_produced_into_policy_decisions_is_located(
    settings: Settings, worker: Process
) -> None:
    _traffic(settings, worker)
    decisions = asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS)))
    genuine = codec.decode(decisions[-1].value)
    fake_input = str(uuid.uuid4())
    forged = dataclasses.replace(
        genuine,
        event_id=derived_event_id("PolicyDecision", fake_input),
        payload=dataclasses.replace(genuine.payload, input_event_id=fake_input, outcome="allow", score=0.0),
    )
    made_up = "5a" * 32  # a chain that links to nothing
    forged = forged.with_chain(genuine.sequence + 1, made_up, "0" * 64)
    forged = forged.with_chain(forged.sequence, made_up, compute_hash(forged.to_json(), made_up))
    meta = asyncio.run(_produce(settings, POLICY_DECISIONS, genuine.subject.encode(), codec.encode(forged)))
    where = (settings.topic(POLICY_DECISIONS), meta.partition, meta.offset)
    assert meta.partition == decisions[-1].partition  # keyed like its conversation

    report = _audit(settings, projections=False)
    assert {("decision.forged", *where), ("chain.forged", *where)} <= _positions(report), report.findings[:5]
    assert {(f.topic, f.partition, f.offset) for f in report.findings} == {where}
    assert audit_cli(settings, json_out=None, skip_projections=True, quiet=True) == 1


def test_a_copied_decision_in_another_partition_is_the_only_finding(
    settings: Settings, worker: Process
) -> None:
    """An exact copy of a genuine decision written into partition 0 (read before its conversation's
    own partition): the old audit fed it to the chain check first, so the genuine record became
    the finding (`chain.duplicate` / `chain.reordered` at its offset)."""
    _traffic(settings, worker, conversations=30)
    decisions = asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS)))
    genuine = next(r for r in decisions if r.partition > 0 and codec.decode(r.value).sequence == 1)
    meta = asyncio.run(_produce(settings, POLICY_DECISIONS, genuine.key, genuine.value, partition=0))
    where = (settings.topic(POLICY_DECISIONS), 0, meta.offset)

    report = _audit(settings, projections=False)
    assert ("decision.forged", *where) in _positions(report), report.findings[:5]
    assert {(f.topic, f.partition, f.offset) for f in report.findings} == {where}, report.findings[:5]


def test_record_altered_in_a_copied_log_is_located(settings: Settings, worker: Process) -> None:
    _traffic(settings, worker, conversations=60)
    copy = settings.with_overrides(topic_prefix=f"{settings.topic_prefix}copy.")
    asyncio.run(ensure_topics(copy))
    victim, where = None, None
    for base in (CONVERSATION_EVENTS, POLICY_RULES, POLICY_DECISIONS):
        records = asyncio.run(read_all(settings, settings.topic(base)))
        if base == POLICY_DECISIONS:
            victim = next(
                r for r in records[len(records) // 2 :] if codec.decode(r.value).payload.outcome == "allow"
            )
        moved = asyncio.run(_copy(copy, base, records, victim))
        if victim is not None and where is None:
            where = (copy.topic(POLICY_DECISIONS), victim.partition, moved[(victim.partition, victim.offset)])
    assert where is not None

    report = _audit(copy, projections=False)
    assert {("decision.altered", *where), ("chain.altered", *where)} == _positions(report), report.findings[
        :5
    ]
    altered = next(f for f in report.findings if f.kind == "decision.altered")
    assert "payload.outcome: recorded 'deny', re-derived 'allow'" in altered.detail
    untouched = _audit(settings, projections=False)
    assert untouched.clean, untouched.findings[:5]


def test_read_model_key_altered_by_hand_is_named_by_the_projection_diff(
    settings: Settings, worker: Process
) -> None:
    _traffic(settings, worker, conversations=60)
    client = sync_client(settings.redis_url, socket_timeout=10)
    try:
        keys = live_keys(client, settings)
        name = next(
            k.decode()
            for k in client.scan_iter(match=keys.namespace + "conv:*", count=1000)
            if k.decode().endswith("}")
        )
        fence = {k.decode(): int(v) for k, v in client.hgetall(name + ":applied").items()}
        client.hincrby(name, "turns", 5)
    finally:
        client.close()

    report = audit_at_rest(settings)
    diffs = [f for f in report.findings if f.kind == "projection.diff"]
    assert [f.key for f in diffs] == [name], report.findings[:5]
    cursor = next(c for c in fence if c.rpartition(":")[0] == settings.topic(CONVERSATION_EVENTS))
    assert (diffs[0].topic, diffs[0].partition, diffs[0].offset) == (
        settings.topic(CONVERSATION_EVENTS),
        int(cursor.rpartition(":")[2]),
        fence[cursor],
    )
    assert "field 'turns'" in diffs[0].detail
    assert report.total == 1
    assert not _scratch_keys(settings)


async def _produce(settings: Settings, base: str, key: bytes, value: bytes, partition: int | None = None):
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        return await producer.send_and_wait(settings.topic(base), value, key=key, partition=partition)
    finally:
        await producer.stop()


async def _copy(target: Settings, base: str, records: list, victim) -> dict[tuple[int, int], int]:
    """Each record to the same partition of ``target``'s topic; ``victim`` is re-encoded with outcome
    'deny' and its chain fields unchanged. Each record's offset in the copy, by (partition, offset).

    The inputs keep their offsets (the decisions' ``lf-input`` headers point at them); the decisions
    may not: the worker writes them in transactions, whose commit markers take offsets."""
    producer = AIOKafkaProducer(bootstrap_servers=target.kafka_bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    moved: dict[tuple[int, int], int] = {}
    try:
        for raw in records:
            value = raw.value
            if victim is not None and (raw.topic, raw.partition, raw.offset) == (
                victim.topic,
                victim.partition,
                victim.offset,
            ):
                event = codec.decode(value)
                value = codec.encode(
                    dataclasses.replace(event, payload=dataclasses.replace(event.payload, outcome="deny"))
                )
            meta = await producer.send_and_wait(
                target.topic(base), value, key=raw.key, partition=raw.partition, headers=list(raw.headers)
            )
            if base != POLICY_DECISIONS:
                assert meta.offset == raw.offset, "the copy must keep every input's offset"
            moved[(raw.partition, raw.offset)] = meta.offset
    finally:
        await producer.stop()
    return moved


def _scratch_keys(settings: Settings) -> list[bytes]:
    client = sync_client(settings.redis_url, socket_timeout=10)
    try:
        return list(client.scan_iter(match="lf:audit:*", count=1000))
    finally:
        client.close()
