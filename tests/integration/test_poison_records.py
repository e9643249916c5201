"""Poison records written straight to Kafka never stop a partition (issue 11, cases 1, 5, 6, 8;
issue 18's audit point), on the real broker, Redis and worker.

- a 1,000,118-byte turn: a dead letter that fits, every following turn decided with an
  unbroken chain, the audit clean;
- ``tokens: -1``: a dead letter, the usage agent alive, the other turns' usage kept;
- the same event written twice: one decision, the audit clean (a duplicate delivery);
- turns without a decision: named by the audit at their positions;
- an input record claiming a system writer: named by the audit.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import time
import uuid
from io import BytesIO

from aiokafka import AIOKafkaProducer
from fastavro import schemaless_writer

from ledgerflow.audit.cli import run_audit
from ledgerflow.audit.report import Report
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import MAGIC, encode_dead_letter
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.contracts.registry import default_registry
from ledgerflow.dlq import read_dead_letters
from ledgerflow.kafka.logs import read_all
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, USAGE_WINDOWS
from tests.support.processes import Process, start

TIMEOUT_S = 90.0
TENANT = "acme"
POISON_BYTES = 1_000_118  # the size of issue 11's case 1


def raw_turn(conv: str, turn_id: str, at: int, event_id: str | None = None, **payload: object) -> bytes:
    """MessageSubmitted bytes written with the wire schema only: no envelope validation."""
    entry = default_registry().latest("MessageSubmitted")
    record = {
        "event_id": event_id or str(uuid.uuid5(uuid.NAMESPACE_URL, conv + turn_id)),
        "type": "MessageSubmitted",
        "schema_version": entry.version,
        "tenant": TENANT,
        "subject": conv,
        "occurred_at": at,
        "producer": str(payload.pop("producer", "gateway")),
        "trace_id": None,
        "sequence": None,
        "prev_hash": None,
        "hash": None,
        "payload": {
            "turn_id": turn_id,
            "role": "user",
            "content": "hello",
            "model": "slm-1",
            "tokens": 3,
            "language": None,
        }
        | payload,
    }
    out = BytesIO()
    out.write(MAGIC + entry.fingerprint)
    schemaless_writer(out, entry.wire, record)
    return out.getvalue()


def sized_turn(conv: str, turn_id: str, at: int, size: int) -> bytes:
    """A turn whose encoded value is exactly ``size`` bytes (content padded)."""
    filler = size - len(raw_turn(conv, turn_id, at, content=""))
    for pad in range(filler - 8, filler + 1):
        value = raw_turn(conv, turn_id, at, content="x" * pad)
        if len(value) == size:
            return value
    raise AssertionError(f"cannot size a turn to {size} bytes")


async def produce(settings: Settings, key: bytes, values: list[bytes]) -> list[tuple[int, int]]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        where = []
        for value in values:  # one at a time: the partition keeps this order
            meta = await producer.send_and_wait(settings.topic(CONVERSATION_EVENTS), value, key=key)
            where.append((meta.partition, meta.offset))
        return where
    finally:
        await producer.stop()


def decisions_of(settings: Settings, conv: str) -> list[tuple[int, object]]:
    """(offset, decision record) of ``conv``'s decisions, in log order."""
    found = []
    for raw in asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS))):
        record = codec.decode(raw.value or b"")
        if record.subject == conv:
            found.append((raw.offset, record))
    return found


def wait_decided(settings: Settings, conv: str, event_ids: list[str], worker: Process) -> list[object]:
    deadline = time.monotonic() + TIMEOUT_S
    decided: list[object] = []
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        decided = [r for _, r in decisions_of(settings, conv)]
        if {r.payload.input_event_id for r in decided} >= set(event_ids):  # type: ignore[attr-defined]
            return decided
        time.sleep(0.5)
    raise AssertionError(f"{len(decided)}/{len(event_ids)} decided in {TIMEOUT_S} s\n{worker.log_tail()}")


def audit(settings: Settings, grace_s: float) -> Report:
    return asyncio.run(run_audit(settings, projections=False, progress=False, grace_s=grace_s))


def event_id_of(value: bytes) -> str:
    return codec.decode(value).event_id


def test_a_one_megabyte_turn_is_dead_lettered_in_a_form_that_fits_and_every_later_turn_is_decided(
    settings: Settings, worker: Process
) -> None:
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    at = time.time_ns() // 1000
    before = raw_turn(conv, "t-0", at)
    poison = sized_turn(conv, "t-big", at + 1, POISON_BYTES)
    after = [raw_turn(conv, f"t-{i}", at + 1 + i) for i in range(1, 24)]
    assert len(poison) == POISON_BYTES

    where = asyncio.run(produce(settings, conv.encode(), [before, poison, *after]))

    good = [event_id_of(v) for v in [before, *after]]
    decided = wait_decided(settings, conv, good, worker)
    assert [r.payload.input_event_id for r in decided] == good, "each good turn exactly once, in order"  # type: ignore[attr-defined]
    assert [r.sequence for r in decided] == list(range(1, 25))  # type: ignore[attr-defined]
    for prev, rec in itertools.pairwise(decided):
        assert rec.prev_hash == prev.hash  # type: ignore[attr-defined]

    letters = [x.letter for x in asyncio.run(read_dead_letters(settings, CONVERSATION_EVENTS))]
    [letter] = [d for d in letters if d is not None and (d.partition, d.offset) == where[1]]
    assert letter.reason_code == "record-too-large" and letter.value_truncated
    assert (letter.value_size, letter.value_sha256) == (POISON_BYTES, hashlib.sha256(poison).hexdigest())
    assert letter.value == poison[: len(letter.value)] and len(encode_dead_letter(letter)) < 8192
    assert worker.popen.poll() is None, worker.log_tail()

    report = audit(settings, grace_s=0)
    assert report.clean, report.findings[:5]
    assert report.stats["turns"] == report.stats["decisions re-derived"] == 24


def test_a_negative_token_count_is_dead_lettered_and_the_other_turns_usage_is_kept(
    settings: Settings, log_dir
) -> None:
    env = {"LEDGERFLOW_USAGE_WINDOW_S": "1", "LEDGERFLOW_USAGE_LATENESS_S": "0.5"}
    worker = start(settings, "worker", "worker", log_dir=log_dir, extra_env=env)
    try:
        conv = f"conv-{uuid.uuid4().hex[:8]}"
        second = (time.time_ns() // 1000 // 1_000_000 - 30) * 1_000_000  # a whole second, 30 s ago
        good = [raw_turn(conv, "t-1", second + 1, tokens=5), raw_turn(conv, "t-3", second + 3, tokens=7)]
        bad = raw_turn(conv, "t-2", second + 2, tokens=-1)
        later = raw_turn(conv, "t-4", second + 5_000_000, tokens=11)  # another window, after the poison
        where = asyncio.run(produce(settings, conv.encode(), [good[0], bad, good[1], later]))

        deadline = time.monotonic() + TIMEOUT_S
        totals: dict[int, tuple[int, int]] = {}
        while time.monotonic() < deadline:
            assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
            totals = {}
            for raw in asyncio.run(read_all(settings, settings.topic(USAGE_WINDOWS))):
                w = codec.decode(raw.value or b"").payload
                totals[w.window_start] = (w.tokens, w.events)  # type: ignore[union-attr]
            if len(totals) >= 2:
                break
            time.sleep(0.5)
        assert totals == {second: (12, 2), second + 5_000_000: (11, 1)}, worker.log_tail()

        wait_decided(settings, conv, [event_id_of(v) for v in [*good, later]], worker)
        letters = [x.letter for x in asyncio.run(read_dead_letters(settings, CONVERSATION_EVENTS))]
        [letter] = [d for d in letters if d is not None and (d.partition, d.offset) == where[1]]
        assert letter.reason.startswith("invalid-envelope: payload.tokens: -1 is outside")
        assert letter.value == bad and not letter.value_truncated
        assert worker.popen.poll() is None, worker.log_tail()
        assert "usage" not in {d.agent for d in letters if d is not None}  # the policy agent owns it
    finally:
        worker.stop()


def test_the_same_event_written_twice_is_decided_once_and_the_audit_calls_it_a_duplicate_delivery(
    settings: Settings, worker: Process
) -> None:
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    at = time.time_ns() // 1000
    turn = raw_turn(conv, "t-1", at)
    nxt = raw_turn(conv, "t-2", at + 1)
    asyncio.run(produce(settings, conv.encode(), [turn, turn, nxt]))

    decided = wait_decided(settings, conv, [event_id_of(turn), event_id_of(nxt)], worker)
    time.sleep(2.0)  # a second decision, if any, would be written within the same batch
    decided = [r for _, r in decisions_of(settings, conv)]
    assert [r.payload.input_event_id for r in decided] == [event_id_of(turn), event_id_of(nxt)]  # type: ignore[attr-defined]
    assert all(isinstance(r.payload, PolicyDecision) for r in decided)  # type: ignore[attr-defined]

    report = audit(settings, grace_s=0)
    assert report.clean, report.findings[:5]
    assert report.stats["duplicate deliveries"] == 1
    assert any("duplicate deliveries" in note for note in report.notes)


def test_turns_without_a_decision_are_named_by_the_audit_at_their_positions(settings: Settings) -> None:
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    at = time.time_ns() // 1000
    values = [raw_turn(conv, f"t-{i}", at + i) for i in range(3)]
    where = asyncio.run(produce(settings, conv.encode(), values))  # no worker: nobody decides

    waiting = audit(settings, grace_s=3600)
    assert waiting.clean and waiting.stats["turns pending"] == 3

    report = audit(settings, grace_s=0)
    topic = settings.topic(CONVERSATION_EVENTS)
    assert {(f.kind, f.topic, f.partition, f.offset) for f in report.findings} == {
        ("decision.missing", topic, p, o) for p, o in where
    }


def test_an_input_record_claiming_a_system_writer_is_named_by_the_audit(settings: Settings) -> None:
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    at = time.time_ns() // 1000
    honest = raw_turn(conv, "t-1", at)
    forged = raw_turn(conv, "t-2", at + 1, producer="ledgerflow-policy")
    where = asyncio.run(produce(settings, conv.encode(), [honest, forged]))

    report = audit(settings, grace_s=3600)
    assert [(f.kind, f.partition, f.offset) for f in report.findings] == [
        ("input.system-producer", *where[1])
    ]


def test_the_same_training_command_written_twice_is_answered_once(
    settings: Settings, worker: Process
) -> None:
    from ledgerflow.contracts.events import new_event
    from ledgerflow.contracts.payloads import EnableTraining
    from ledgerflow.topics import TRAINING_AUDIT, TRAINING_COMMANDS

    tenant = f"tn-{uuid.uuid4().hex[:8]}"
    command_id = str(uuid.uuid4())
    command = codec.encode(
        new_event(
            "EnableTraining",
            tenant=tenant,
            subject=tenant,
            payload=EnableTraining(command_id, "alice", "fine-tune run", 600, None),
            producer="edge:alice",
            occurred_at_micros=time.time_ns() // 1000,
        )
    )

    async def send_twice() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for _ in range(2):
                await producer.send_and_wait(settings.topic(TRAINING_COMMANDS), command, key=tenant.encode())
        finally:
            await producer.stop()

    asyncio.run(send_twice())

    def answers() -> list[object]:
        raws = asyncio.run(read_all(settings, settings.topic(TRAINING_AUDIT)))
        records = [codec.decode(r.value or b"") for r in raws]
        return [r for r in records if getattr(r.payload, "command_id", None) == command_id]

    deadline = time.monotonic() + TIMEOUT_S
    while not answers() and time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        time.sleep(0.5)
    time.sleep(2.0)  # a second answer, if any, would be written within the same batch
    assert len(answers()) == 1, f"the duplicate command was answered again: {answers()}"
    assert "duplicate delivery" in worker.log.read_text(errors="replace")
    report = audit(settings, grace_s=0)
    assert report.clean, report.findings[:5]
    assert report.stats["duplicate training commands"] == 1


def test_unusable_rule_pack_records_are_dead_lettered_and_the_pack_in_force_stays(
    settings: Settings, worker: Process
) -> None:
    from ledgerflow.contracts.events import new_event
    from ledgerflow.contracts.payloads import RulePackPublished
    from ledgerflow.topics import POLICY_RULES

    tenant = f"tn-{uuid.uuid4().hex[:8]}"
    invalid = codec.encode(
        new_event(
            "RulePackPublished",
            tenant=tenant,
            subject=tenant,
            payload=RulePackPublished(version=7, constitution_hash="0" * 64, document='{"rules": 5}'),
            producer="edge:mallory",
            occurred_at_micros=time.time_ns() // 1000,
        )
    )
    records = [(tenant.encode(), invalid), (tenant.encode(), b"\x00garbage"), (b"someone-else", invalid)]

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for key, value in records:
                await producer.send_and_wait(settings.topic(POLICY_RULES), value, key=key)
        finally:
            await producer.stop()

    asyncio.run(send())
    deadline = time.monotonic() + TIMEOUT_S
    letters: list = []
    while time.monotonic() < deadline and len(letters) < len(records):
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        letters = [x.letter for x in asyncio.run(read_dead_letters(settings, POLICY_RULES))]
        time.sleep(0.5)
    assert len(letters) == len(records), f"want one dead letter per unusable record, got {letters}"
    codes = sorted(letter.reason_code for letter in letters)
    assert codes.count("invalid-rule-pack") == 1, codes
    assert all(letter.reason for letter in letters)
    # the worker keeps deciding with the pack in force (the built-in default for this tenant)
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    turn = raw_turn(conv, "t-1", time.time_ns() // 1000)
    asyncio.run(produce(settings, conv.encode(), [turn]))
    wait_decided(settings, conv, [event_id_of(turn)], worker)
