"""Dead letters on the real stack: every kind of poison record lands in ``<topic>.dlq`` with
its reason, original key/value/headers and exact source position, while the good turns
around it are projected in order — nothing lost, nothing reordered.

Also reads the DLQ back through ``ledgerflow.dlq`` (``dlq_cli`` list/show) against the
real broker.
"""

from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from io import BytesIO

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from fastavro import schemaless_writer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import MAGIC, TOPIC_TYPES, encode, encode_dead_letter
from ledgerflow.contracts.events import MAX_CONTENT_BYTES, Event, new_event
from ledgerflow.contracts.payloads import (
    ConversationStarted,
    DeadLetter,
    MessageSubmitted,
    TrainingEnabled,
)
from ledgerflow.contracts.registry import default_registry
from ledgerflow.demo import child_env
from ledgerflow.dlq import dlq_cli, read_dead_letters
from ledgerflow.errors import DecodeError, NotFound
from ledgerflow.projections.keys import Keys
from ledgerflow.redisclient import sync_client
from ledgerflow.topics import CONVERSATION_EVENTS
from tests.support.processes import Process

TIMEOUT_S = 90.0
TENANT = "acme"
T0 = 1_780_000_000_000_000  # fixed occurred_at (2026-05-28) so the bad bytes are deterministic
HEADERS = [
    ("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ("x-producer", b"gateway-7"),
    ("x-empty", None),
]


@dataclass(frozen=True)
class Planned:
    """One record to produce: a good turn (``turn_id``) or a bad one (``code`` expected)."""

    name: str
    value: bytes
    headers: tuple[tuple[str, bytes | None], ...] = ()
    turn_id: str | None = None
    code: str | None = None
    reason_mentions: str = ""


def _turn(conv: str, turn_id: str, content: str = "hello", at: int = T0) -> Event:
    return new_event(
        "MessageSubmitted",
        tenant=TENANT,
        subject=conv,
        producer="test",
        payload=MessageSubmitted(turn_id, "user", content, "slm-1", 3),
        occurred_at_micros=at,
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, conv + turn_id)),
    )


def _raw_turn(conv: str, **override: object) -> bytes:
    """MessageSubmitted bytes written straight with the wire schema: no envelope validation."""
    entry = default_registry().latest("MessageSubmitted")
    record: dict[str, object] = {
        "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, conv + repr(sorted(override)))),
        "type": "MessageSubmitted",
        "schema_version": entry.version,
        "tenant": TENANT,
        "subject": conv,
        "occurred_at": T0,
        "producer": "test",
        "trace_id": None,
        "sequence": None,
        "prev_hash": None,
        "hash": None,
        "payload": {
            "turn_id": "bad",
            "role": "user",
            "content": "x",
            "model": "slm-1",
            "tokens": None,
            "language": None,
        },
    }
    payload = override.pop("payload", {})
    record.update(override)
    record["payload"] = {**record["payload"], **payload}  # type: ignore[dict-item]
    out = BytesIO()
    out.write(MAGIC + entry.fingerprint)
    schemaless_writer(out, entry.wire, record)
    return out.getvalue()


def _plan(settings: Settings, conv: str) -> list[Planned]:
    good = encode(_turn(conv, "template", "a turn that will be cut short"))
    training = new_event(
        "TrainingEnabled",
        tenant=TENANT,
        subject=TENANT,
        producer="training-agent",
        payload=TrainingEnabled("cmd-1", 1, "admin", "pilot", None, None),
        occurred_at_micros=T0,
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, conv)),
    )
    letter = DeadLetter(
        settings.topic(CONVERSATION_EVENTS), 0, 0, b"k", b"v", (), "truncated: x", "truncated", T0, "someone"
    )
    hdrs = tuple(HEADERS)
    bad = [
        Planned("garbage", b"\x00\x13\x37 this is not avro \xff\xfe\x80", hdrs, code="not-single-object"),
        Planned("json instead of avro", b'{"type":"MessageSubmitted"}', code="not-single-object"),
        Planned("empty value", b"", code="not-single-object"),
        Planned("truncated", good[: len(good) // 2], hdrs, code="truncated"),
        Planned(
            "unknown fingerprint",
            MAGIC + bytes.fromhex("0011223344556677") + good[10:],
            code="unknown-fingerprint",
            reason_mentions="0011223344556677",
        ),
        Planned("trailing bytes", good + b"\x00\x00", code="undecodable"),
        Planned(
            "wrong schema: TrainingEnabled",
            encode(training),
            hdrs,
            code="wrong-type-for-topic",
            reason_mentions="TrainingEnabled",
        ),
        Planned(
            "wrong schema: DeadLetter",
            encode_dead_letter(letter),
            code="wrong-type-for-topic",
            reason_mentions="DeadLetter",
        ),
        Planned(
            "bad uuid",
            _raw_turn(conv, event_id="not-a-uuid"),
            hdrs,
            code="invalid-envelope",
            reason_mentions="event_id",
        ),
        Planned(
            "empty tenant", _raw_turn(conv, tenant=""), code="invalid-envelope", reason_mentions="tenant"
        ),
        Planned(
            "timestamp in seconds",
            _raw_turn(conv, occurred_at=1_780_000_000),
            code="invalid-envelope",
            reason_mentions="occurred_at",
        ),
        Planned(
            "timestamp after 2200",
            _raw_turn(conv, occurred_at=8_000_000_000_000_000),
            code="invalid-envelope",
            reason_mentions="occurred_at",
        ),
        Planned(
            "content over the limit",
            _raw_turn(conv, payload={"content": "é" * (MAX_CONTENT_BYTES // 2 + 1)}),
            hdrs,
            code="content-too-large",
            reason_mentions=str(MAX_CONTENT_BYTES),
        ),
    ]
    started = new_event(
        "ConversationStarted",
        tenant=TENANT,
        subject=conv,
        producer="test",
        payload=ConversationStarted("ana", "slm-1"),
        occurred_at_micros=T0,
    )
    plan = [Planned("started", encode(started))]
    for i, record in enumerate(bad):
        plan.append(Planned(f"turn {i}", encode(_turn(conv, f"t{i}", at=T0 + i)), turn_id=f"t{i}"))
        plan.append(record)
    plan.append(Planned("last turn", encode(_turn(conv, "t-last", at=T0 + 99)), hdrs, turn_id="t-last"))
    return plan


def _expected_reason(p: Planned) -> str:
    """What the codec says about the bad bytes (and a check that the fixture is what it claims)."""
    try:
        codec.decode(p.value, allowed_types=TOPIC_TYPES[CONVERSATION_EVENTS])
    except DecodeError as exc:
        assert codec.reason_code(exc.reason) == p.code, f"{p.name}: fixture decodes as {exc.reason}"
        assert p.reason_mentions in exc.reason, f"{p.name}: {exc.reason}"
        return exc.reason
    raise AssertionError(f"{p.name}: fixture bytes decode cleanly; they are not poison")


async def _produce(settings: Settings, key: bytes, plan: list[Planned]) -> list[tuple[int, int]]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=4 * 1024 * 1024
    )
    await producer.start()
    try:
        where = []
        for p in plan:  # one at a time: the order on the partition is the plan's order
            meta = await producer.send_and_wait(
                settings.topic(CONVERSATION_EVENTS), p.value, key=key, headers=list(p.headers) or None
            )
            where.append((meta.partition, meta.offset))
        return where
    finally:
        await producer.stop()


def _wait_until_processed(settings: Settings, conv: str, turns: list[Event], worker: Process) -> list[str]:
    """Turn ids of the read model once every good turn is projected *and* decided.

    The policy agent dead-letters conversation.events and sends a batch's letters before
    its decisions, so once the last turn's decision is in the read model every earlier
    dead letter has been acknowledged by the broker.
    """
    keys = Keys.for_prefix(settings.topic_prefix)
    client = sync_client(settings.redis_url, socket_timeout=5)
    turn_ids: list[str] = []
    decided = 0
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
            raw = client.lrange(keys.conversation_turns(TENANT, conv), 0, -1)
            turn_ids = [orjson.loads(t)["turn_id"] for t in raw]
            wanted = [t.event_id for t in turns]
            decided = sum(
                client.hmget(keys.conversation_decisions(TENANT, conv), wanted)[i] is not None
                for i in range(len(wanted))
            )
            if len(turn_ids) >= len(turns) and decided == len(turns):
                return turn_ids
            time.sleep(0.3)
    finally:
        client.close()
    raise AssertionError(
        f"within {TIMEOUT_S} s only {turn_ids} projected and {decided}/{len(turns)} "
        f"decided\n{worker.log_tail()}"
    )


def test_every_bad_record_kind_lands_in_the_dlq_in_place_while_good_turns_project_in_order(
    settings: Settings, worker: Process, capsys: pytest.CaptureFixture[str]
) -> None:
    conv = f"conv-{uuid.uuid4().hex[:8]}"
    plan = _plan(settings, conv)
    bad = [p for p in plan if p.code is not None]
    reasons = [_expected_reason(p) for p in bad]

    where = asyncio.run(_produce(settings, conv.encode(), plan))

    assert len({partition for partition, _ in where}) == 1
    good_turns = [p.turn_id for p in plan if p.turn_id is not None]
    turns = [_turn(conv, t) for t in good_turns]  # same event ids as the produced turns
    assert _wait_until_processed(settings, conv, turns, worker) == good_turns
    located = asyncio.run(read_dead_letters(settings, CONVERSATION_EVENTS))
    assert worker.popen.poll() is None, worker.log_tail()
    bad_where = [w for p, w in zip(plan, where, strict=True) if p.code is not None]
    got = [(x.letter.partition, x.letter.offset) if x.letter else None for x in located]
    assert got == bad_where, "each bad record exactly once, in the order it was written"
    for p, expected_reason, x in zip(bad, reasons, located, strict=True):
        d = x.letter
        assert d is not None, x.problem
        assert x.dlq_topic == settings.topic(CONVERSATION_EVENTS + ".dlq")
        assert (d.reason_code, d.reason) == (p.code, expected_reason), p.name
        assert d.source_topic == settings.topic(CONVERSATION_EVENTS), p.name
        assert d.key == conv.encode(), p.name
        assert d.value == p.value, f"{p.name}: original bytes not kept"
        assert d.headers == p.headers, p.name
        assert d.agent == "policy"  # the agent that owns conversation.events' DLQ

    # The operator's view of the same letters.
    assert dlq_cli(settings, "list", CONVERSATION_EVENTS, None, None, False) == 0
    table = capsys.readouterr().out.splitlines()
    rows = [line for line in table if f"{CONVERSATION_EVENTS}[" in line]
    assert len(rows) == len(bad)
    for row, p, x in zip(rows, bad, located, strict=True):
        assert row.split()[0] == str(x.dlq_offset)
        assert f"[{x.letter.partition}]@{x.letter.offset}" in row and p.code in row, row  # type: ignore[union-attr]
    assert f"{len(bad)} dead letter(s)" in table[-1]

    assert dlq_cli(settings, "list", CONVERSATION_EVENTS, None, None, True) == 0
    doc = orjson.loads(capsys.readouterr().out)
    assert [base64.b64decode(e["value"]) for e in doc["dead_letters"]] == [p.value for p in bad]
    assert sum(doc["summary"]["by_reason_code"].values()) == len(bad)
    assert doc["summary"]["by_reason_code"]["invalid-envelope"] == 4

    big = located[[p.code for p in bad].index("content-too-large")]
    assert dlq_cli(settings, "show", CONVERSATION_EVENTS, None, big.dlq_offset, False) == 0
    detail = capsys.readouterr().out
    assert "content-too-large" in detail and "traceparent" in detail and "x-empty = null" in detail
    assert f"{len(big.letter.value)} bytes" in detail  # type: ignore[union-attr]
    assert "c3 01" in detail  # the hexdump of the value's first bytes

    # The same through the real command line, as an operator runs it.
    command = [
        sys.executable,
        "-m",
        "ledgerflow.cli",
        "dlq",
        "list",
        "--topic",
        CONVERSATION_EVENTS,
        "--json",
    ]
    cli = subprocess.run(command, env=child_env(settings), capture_output=True, timeout=60, check=False)
    assert cli.returncode == 0, cli.stderr.decode()
    listed = orjson.loads(cli.stdout)["dead_letters"]
    expected = [(offset, p.code) for (_, offset), p in zip(bad_where, bad, strict=True)]
    assert [(e["offset"], e["reason_code"]) for e in listed] == expected


async def _put_letters(settings: Settings, letters: list[DeadLetter]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        topic = settings.topic("usage.windows.dlq")
        for d in letters:
            await producer.send_and_wait(topic, encode_dead_letter(d), key=d.key)
        await producer.send_and_wait(topic, b"not a dead letter")
    finally:
        await producer.stop()


def test_dlq_reader_reports_empty_and_missing_topics_limits_and_keeps_unreadable_letters(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert dlq_cli(settings, "list", "training.audit", None, None, False) == 0
    assert "no dead letters in" in capsys.readouterr().out
    assert dlq_cli(settings, "list", "no.such.topic", None, None, False) == 1
    assert "do not exist" in capsys.readouterr().out

    source = settings.topic("usage.windows")
    letters = [
        DeadLetter(
            source,
            1,
            40 + i,
            b"acme",
            bytes([i]) * 3,
            (("h", b"v"),),
            f"undecodable: test {i}",
            "undecodable",
            T0 + i,
            "usage",
        )
        for i in range(4)
    ]
    asyncio.run(_put_letters(settings, letters))

    everything = asyncio.run(read_dead_letters(settings))
    assert [x.letter for x in everything[:4]] == letters
    assert everything[4].letter is None and everything[4].raw == b"not a dead letter"
    assert everything[4].problem is not None and everything[4].problem.startswith("not-single-object")

    newest_two = asyncio.run(read_dead_letters(settings, "usage.windows", limit=2))
    assert [x.dlq_offset for x in newest_two] == [3, 4]

    assert dlq_cli(settings, "show", "usage.windows", None, 1, True) == 0
    shown = orjson.loads(capsys.readouterr().out)
    assert (shown["offset"], base64.b64decode(shown["value"])) == (41, b"\x01\x01\x01")
    # a failure, not a report: NotFound (one line on stderr, exit 1), nothing on stdout
    with pytest.raises(NotFound, match="no dead letter at offset 99"):
        dlq_cli(settings, "show", "usage.windows", None, 99, False)
    with pytest.raises(NotFound, match="do not exist"):
        dlq_cli(settings, "show", "no.such.topic", None, 0, False)
    assert capsys.readouterr().out == ""
