"""``ledgerflow dlq replay`` as a subprocess against the real broker: to the source topic and
partition, with a dry run and filters, each replayed record traceable to its dead letter, each
letter replayed once, and letters that would fail again (or were cut) left alone."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.deadletters import shape_dead_letter
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import ConversationClosed, DeadLetter, MessageSubmitted
from ledgerflow.dlq.replay import REPLAY_HEADER
from ledgerflow.kafka.deadletters import LocatedDeadLetter, read_dead_letters
from ledgerflow.kafka.logs import RawRecord, read_topic
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.policy import TrainingState
from ledgerflow.policy.wire import decide
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS
from tests.integration.clikit import run_cli
from tests.support.processes import Process

GOOD = codec.encode(
    new_event(
        "ConversationClosed",
        tenant="acme",
        subject="c-fixed",
        payload=ConversationClosed("done"),
        producer="test",
        occurred_at_micros=1_700_000_000_000_000,
    )
)


def _letter(settings: Settings, value: bytes, reason: str, key: bytes, offset: int) -> DeadLetter:
    return shape_dead_letter(
        source_topic=settings.topic(CONVERSATION_EVENTS),
        partition=3,
        offset=offset,
        key=key,
        value=value,
        headers=[("traceparent", b"00-abc-def-01")],
        reason=reason,
        agent="policy",
        failed_at=time.time_ns() // 1000,
    )


async def _dead_letter(settings: Settings, *letters: DeadLetter, dlq: str | None = None) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for letter in letters:
            await producer.send_and_wait(
                dlq or settings.topic(CONVERSATION_EVENTS) + ".dlq",
                codec.encode_dead_letter(letter),
                key=letter.key,
            )
    finally:
        await producer.stop()


async def _source(settings: Settings, base: str = CONVERSATION_EVENTS) -> list[RawRecord]:
    return [r async for r in read_topic(settings, settings.topic(base))]


def test_replay_dry_run_then_once_then_never_again(settings: Settings) -> None:
    fixed = _letter(settings, GOOD, "unknown-schema: fingerprint 00ff not in the registry", b"c-fixed", 7)
    poison = _letter(settings, b'{"type": "x"}', "not-single-object: value starts with 7b22", b"c-json", 8)
    cut = dataclasses.replace(_letter(settings, GOOD, "too-large: 2 MiB", b"c-big", 9), value_truncated=True)
    asyncio.run(_dead_letter(settings, fixed, poison, cut))
    dlq = settings.topic(CONVERSATION_EVENTS) + ".dlq"

    dry = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--dry-run")
    assert dry.code == 0, dry.err
    lines = dry.out.splitlines()
    assert lines[0] == f"{dlq}[0]@0  would replay: decodes now"
    assert lines[1].startswith(f"{dlq}[0]@1  skipped: still does not decode (not-single-object")
    assert (
        lines[2]
        == f"{dlq}[0]@2  skipped: the dead letter kept only part of the record; send it again at the producer"
    )
    assert lines[3] == "1 of 3 dead letter(s) would be replayed"
    assert asyncio.run(_source(settings)) == []  # a dry run produces nothing

    done = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--json")
    assert done.code == 0, done.err
    steps = json.loads(done.out)
    assert [s["action"] for s in steps] == ["replay", "skip", "skip"]
    replayed = asyncio.run(_source(settings))
    assert len(replayed) == 1
    record = replayed[0]
    assert (record.partition, record.offset) == (steps[0]["replayed_partition"], steps[0]["replayed_offset"])
    assert record.partition == 3  # the letter's own partition: its conversation's order holds
    assert record.value == GOOD and record.key == b"c-fixed"
    assert dict(record.headers) == {"traceparent": b"00-abc-def-01", "lf-replay-of": f"{dlq}[0]@0".encode()}

    again = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--offset", "0")
    source = settings.topic(CONVERSATION_EVENTS)
    assert (
        again.out.splitlines()[0] == f"{dlq}[0]@0  skipped: already replayed as {source}[3]@{record.offset}"
    )
    assert len(asyncio.run(_source(settings))) == 1


def test_replay_filters_and_force(settings: Settings) -> None:
    a = _letter(settings, b"\x00junk", "not-single-object: value starts with 006a", b"k1", 1)
    b = _letter(settings, b"\x00junk", "invalid-envelope: tenant: must not be empty", b"k2", 2)
    asyncio.run(_dead_letter(settings, a, b))
    none = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--reason", "no-such-code")
    assert (none.code, none.out.strip()) == (0, "no dead letter matches")
    by_key = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--key", "k2", "--dry-run")
    assert len(by_key.out.splitlines()) == 2 and "@1  skipped: still does not decode" in by_key.out
    forced = run_cli(
        settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--reason", "not-single-object", "--force"
    )
    assert forced.code == 0, forced.err
    assert "replayed -> [3]@0: forced; still not-single-object" in forced.out
    assert [r.key for r in asyncio.run(_source(settings))] == [b"k1"]


def test_replay_needs_a_topic_and_an_existing_dlq(settings: Settings) -> None:
    ran = run_cli(settings, "dlq", "replay")
    assert ran.code == 2
    assert (
        ran.one_line()
        == "ledgerflow: dlq replay needs --topic T, the source topic (e.g. conversation.events)"
    )
    unknown = run_cli(settings, "dlq", "replay", "--topic", "no.such.topic")
    assert unknown.code == 2 and "no DLQ topic" in unknown.one_line()


def test_replay_puts_nothing_back_into_a_topic_only_the_agents_write(settings: Settings) -> None:
    """A decision the projector refused (here: altered after it was hashed) decodes, so the old
    replay put it back into policy.decisions ("would replay: decodes now") — a record no agent
    wrote, refused and dead-lettered again, replayed again by the next run."""
    turn = new_event(
        "MessageSubmitted",
        tenant="acme",
        subject="c-1",
        producer="gateway",
        payload=MessageSubmitted("t-1", "user", "hello", "slm-1", None),
        occurred_at_micros=1_700_000_000_000_000,
    )
    decision = decide(turn, codec.encode(turn), builtin_default_pack(), TrainingState(False, 0), None)
    altered = dataclasses.replace(decision, payload=dataclasses.replace(decision.payload, outcome="deny"))
    letter = dataclasses.replace(
        _letter(settings, codec.encode(altered), "chain-altered: hash 3b0c… does not match", b"c-1", 4),
        source_topic=settings.topic(POLICY_DECISIONS),
        agent="read-models",
    )
    asyncio.run(_dead_letter(settings, letter, dlq=settings.topic(POLICY_DECISIONS) + ".dlq"))
    for args in (("--dry-run",), ("--force",), ()):
        ran = run_cli(settings, "dlq", "replay", "--topic", POLICY_DECISIONS, *args)
        assert ran.code == 2, ran.out
        assert ran.one_line().startswith(
            f"ledgerflow: dlq replay --topic {POLICY_DECISIONS}: only ledgerflow's agents write "
            f"{POLICY_DECISIONS}; a record put back there would be one they did not write"
        )
    assert asyncio.run(_source(settings, POLICY_DECISIONS)) == [], "the replay wrote into policy.decisions"


def test_replay_of_an_offset_with_no_letter_fails_like_show(settings: Settings) -> None:
    """``--offset 99`` with no letter there used to print "no dead letter matches" and exit 0, while
    ``dlq show --offset 99`` exits 1: the operator's script took a typo for a replay done."""
    asyncio.run(_dead_letter(settings, _letter(settings, GOOD, "unknown-schema: 00ff", b"c-1", 1)))
    dlq = settings.topic(CONVERSATION_EVENTS) + ".dlq"
    said = (
        f"no dead letter at offset 99 of {dlq}; "
        f"`ledgerflow dlq list --topic {CONVERSATION_EVENTS}` shows the offsets there are"
    )
    show = run_cli(settings, "dlq", "show", "--topic", CONVERSATION_EVENTS, "--offset", "99")
    # one line on stderr like every failure (docs/cli.md); it used to go to stdout, unprefixed
    assert (show.code, show.out, show.one_line()) == (1, "", f"ledgerflow: {said}")
    for extra in ((), ("--dry-run",), ("--force",), ("--json",)):
        ran = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--offset", "99", *extra)
        assert ran.code == show.code, (extra, ran.out, ran.err)
        assert ran.one_line() == f"ledgerflow: {said}"
        assert ran.out == ""
    assert asyncio.run(_source(settings)) == []
    # A letter that is there but filtered out is still "no dead letter matches", exit 0.
    other = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--offset", "0", "--key", "x")
    assert (other.code, other.out.strip()) == (0, "no dead letter matches")


def test_a_forced_replay_that_fails_again_is_not_forced_again_unless_named(
    settings: Settings, worker: Process
) -> None:
    """``--force`` of a letter that still does not decode: the worker dead-letters the replay again,
    as a new letter carrying ``lf-replay-of``. Each later ``--force`` run used to replay that new
    letter too (one more round per run, for ever); now only ``--offset`` naming it forces it again."""
    poison = _letter(settings, b"\x00junk", "not-single-object: value starts with 006a", b"k1", 1)
    asyncio.run(_dead_letter(settings, poison))
    dlq = settings.topic(CONVERSATION_EVENTS) + ".dlq"
    first = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--force")
    assert first.code == 0, first.err
    assert "replayed -> [3]@0: forced; still not-single-object" in first.out

    again = _wait_for_letter(settings, 1, worker)
    assert again.letter is not None
    assert (REPLAY_HEADER, f"{dlq}[0]@0".encode()) in again.letter.headers

    second = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--force")
    assert second.code == 0, second.err
    lines = second.out.splitlines()
    assert lines[0].startswith(f"{dlq}[0]@0  skipped: already replayed as ")
    assert lines[1] == (
        f"{dlq}[0]@1  skipped: still does not decode (not-single-object: value starts with 006a, not c301); "
        f"it was forced once already (as {dlq}[0]@0) and dead-lettered again: fix the cause first, "
        "or force it once more by name: --offset 1 --force"
    )
    assert lines[2] == "0 of 2 dead letter(s) replayed"
    assert len(asyncio.run(_source(settings))) == 1

    named = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--offset", "1", "--force")
    assert named.code == 0, named.err
    assert named.out.splitlines()[0].startswith(
        f"{dlq}[0]@1  replayed -> [3]@1: forced; still not-single-object"
    )
    assert [r.key for r in asyncio.run(_source(settings))] == [b"k1", b"k1"]


def _wait_for_letter(settings: Settings, offset: int, worker: Process) -> LocatedDeadLetter:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, worker.log_tail()
        found = [
            x for x in asyncio.run(read_dead_letters(settings, CONVERSATION_EVENTS)) if x.dlq_offset == offset
        ]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no dead letter at offset {offset} within 60 s:\n{worker.log_tail()}")


def test_a_letter_naming_a_partition_or_offset_its_topic_cannot_have_is_skipped_and_the_rest_replayed(
    settings: Settings,
) -> None:
    """A letter written into the DLQ from outside may name any position. One naming partition 99 of
    the 6-partition topic made the replay wait 40 s for that partition's offsets and fail, exit 1,
    blaming Kafka (`a service did not answer`), with no genuine letter replayed, dry run or not; one
    naming a topic that does not exist failed it at once (`topic … does not exist`)."""
    fixed = _letter(settings, GOOD, "unknown-schema: fingerprint 00ff not in the registry", b"c-fixed", 7)
    nowhere = dataclasses.replace(fixed, partition=99)
    below = dataclasses.replace(fixed, partition=-1)
    negative = dataclasses.replace(fixed, offset=-7)
    made_up = dataclasses.replace(fixed, source_topic=settings.topic("no.such.topic"))
    asyncio.run(_dead_letter(settings, nowhere, below, negative, made_up, fixed))
    dlq = settings.topic(CONVERSATION_EVENTS) + ".dlq"
    source = settings.topic(CONVERSATION_EVENTS)

    began = time.monotonic()
    dry = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS, "--dry-run")
    assert dry.code == 0, dry.err
    assert time.monotonic() - began < 30
    lines = dry.out.splitlines()
    assert lines[0] == (
        f"{dlq}[0]@0  skipped: it names {source}[99]@7, which the topic cannot hold (6 partitions, "
        "offsets from 0): not written by an agent"
    )
    assert lines[1].startswith(f"{dlq}[0]@1  skipped: it names {source}[-1]@7,")
    assert lines[2].startswith(f"{dlq}[0]@2  skipped: it names {source}[3]@-7,")
    other = settings.topic("no.such.topic")
    assert lines[3:] == [
        f"{dlq}[0]@3  skipped: it names another source topic ({other!r}) than its DLQ's",
        f"{dlq}[0]@4  would replay: decodes now",
        "1 of 5 dead letter(s) would be replayed",
    ]

    done = run_cli(settings, "dlq", "replay", "--topic", CONVERSATION_EVENTS)
    assert done.code == 0, done.err
    [record] = asyncio.run(_source(settings))
    assert (record.partition, record.value) == (3, GOOD)
