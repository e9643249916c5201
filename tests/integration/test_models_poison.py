"""Poison on ``models.commands``, written straight to Kafka (no edge in front), on the real
broker and a real worker: each hostile record is one dead letter with its reason and never
an outcome; a command whose values the registry refuses is one ``ModelRejected``; the models
agent keeps going, so the good commands after the poison are applied, once, chained.

Which guard each case leans on: the input size limit (``contracts/inputs.py``), the codec's
framing, fingerprint, topic-type and envelope checks, the key check, and the agent's
dead-lettering of whatever does not decode (``agents/models.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from pathlib import Path
from typing import Any

from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import MAGIC
from ledgerflow.contracts.events import Event
from ledgerflow.errors import DecodeError
from ledgerflow.kafka.logs import read_all
from ledgerflow.limits import MAX_INPUT_RECORD_BYTES
from ledgerflow.topics import MODELS_AUDIT, MODELS_COMMANDS
from tests.integration.fuzzkit import (
    BROKER_ACCEPTED_RECORD_BYTES,
    Planned,
    Problems,
    alive,
    check_letter,
    crashes_in_log,
    observe,
    produce,
    turn_payload,
    wire_record,
)
from tests.support.processes import Process, start

TENANT = "mp-acme"
KEY = TENANT.encode()
TIMEOUT_S = 90.0


def register(command_id: str, model: str = "slm-1", **payload: Any) -> dict[str, Any]:
    return {
        "command_id": command_id,
        "actor": "ann",
        "model": model,
        "provider": "local",
        "context_window": 8192,
        "input_price_per_1k": 0.5,
        "output_price_per_1k": None,
        "enabled": True,
        "expected_version": None,
    } | payload


def command(payload: dict[str, Any], kind: str = "RegisterModel", **envelope: Any) -> bytes:
    return wire_record(kind, {"tenant": TENANT, "subject": TENANT} | envelope, payload)


def padded(size: int) -> bytes:
    """A RegisterModel of exactly ``size`` bytes (the model id padded): valid but for its size."""
    base = len(command(register("big", model="")))
    pad = size - base
    for _ in range(8):  # the model id's varint length grows with it: converge
        value = command(register("big", model="m" * pad))
        if len(value) == size:
            return value
        pad += size - len(value)
    raise AssertionError(f"could not build a {size}-byte command")


def bad(label: str, value: bytes, key: bytes | None = KEY) -> Planned:
    return Planned(MODELS_COMMANDS, label, value, key, "bad")


def good(label: str, payload: dict[str, Any], kind: str = "RegisterModel") -> Planned:
    return Planned(MODELS_COMMANDS, label, command(payload, kind), KEY, "good", payload["command_id"])


def outcomes(settings: Settings) -> list[Event]:
    """The decodable records of ``models.audit`` (the test forges two that are not)."""
    found = []
    for raw in asyncio.run(read_all(settings, settings.topic(MODELS_AUDIT))):
        with contextlib.suppress(DecodeError):
            found.append(codec.decode(raw.value or b""))
    return found


def wait_answered(settings: Settings, ids: set[str], worker: Process) -> list[Event]:
    deadline = time.monotonic() + TIMEOUT_S
    seen: list[Event] = []
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        seen = outcomes(settings)
        if {getattr(e.payload, "command_id", None) for e in seen} >= ids:
            return seen
        time.sleep(0.5)
    raise AssertionError(f"{len(seen)} outcomes, want {sorted(ids)}\n{worker.log_tail()}")


# (the case, its record, the dead letter's reason code)
POISON: list[tuple[Planned, str]] = [
    (bad("undecodable bytes", b"\x00\xffnot avro at all"), "not-single-object"),
    (bad("only the magic's first byte", MAGIC[:1]), "truncated"),
    (bad("an unknown fingerprint", MAGIC + b"\x01" * 8 + b"\x02\x04"), "unknown-fingerprint"),
    (bad("fields missing (body cut short)", command(register("cut"))[:-12]), "truncated"),
    (bad("trailing garbage", command(register("tail")) + b"\x00\x00"), "undecodable"),
    (
        bad("a turn (wrong schema for the topic)", wire_record("MessageSubmitted", {}, turn_payload("t1"))),
        "wrong-type-for-topic",
    ),
    (
        bad(
            "a tenant outside the id grammar",
            command(register("id1"), tenant="a b}", subject="a b}"),
            b"a b}",
        ),
        "invalid-envelope",
    ),
    (bad("occurred_at of 1970", command(register("t70"), occurred_at=0)), "invalid-envelope"),
    (bad("an event id that is no UUID", command(register("uuid"), event_id="../../x")), "invalid-envelope"),
    (bad("a key that is not the tenant", command(register("key")), b"other-tenant"), "invalid-envelope"),
    (bad("no key at all", command(register("nokey")), None), "invalid-envelope"),
    (bad("over the input limit by one byte", padded(MAX_INPUT_RECORD_BYTES + 1)), "record-too-large"),
    (bad("the broker's largest record", padded(BROKER_ACCEPTED_RECORD_BYTES)), "record-too-large"),
]


def test_poison_commands_are_dead_lettered_with_their_reason_and_the_agent_applies_what_follows(
    settings: Settings, worker: Process
) -> None:
    first = good("register slm-1", register("c-1", expected_version=0))
    refused = [  # decodable, but the registry refuses the values: answered, not dead-lettered
        good("a negative context window", register("r-window", model="neg", context_window=-1)),
        good("a NaN price", register("r-nan", model="nan", input_price_per_1k=float("nan"))),
        good("an infinite price", register("r-inf", model="inf", output_price_per_1k=float("inf"))),
        good("a model id with a newline", register("r-nl", model="a\nb")),
        good(
            "disable an unknown model",
            {
                "command_id": "r-unk",
                "actor": "ann",
                "model": "x" * 5000,
                "enabled": False,
                "expected_version": None,
            },
            "SetModelEnabled",
        ),
        good("a stale expected_version", register("r-stale", model="late", expected_version=0)),
    ]
    anonymous = [  # no command id: nothing to match a redelivery against, so each is decided
        Planned(MODELS_COMMANDS, f"no command id ({m})", command(register("", model=m)), KEY, "good")
        for m in ("anon-1", "anon-2")
    ]
    after = [
        good("register big-1", register("c-2", model="big-1", context_window=100_000_000)),
        good(
            "disable slm-1",
            {"command_id": "c-3", "actor": "ann", "model": "slm-1", "enabled": False, "expected_version": 4},
            "SetModelEnabled",
        ),
    ]
    plan = [first, *[p for p, _ in POISON], *refused, *anonymous, *after]
    # The agent's output written from outside before it recovers from it: skipped, named by the audit.
    forged_outputs = [
        Planned(MODELS_AUDIT, "garbage on models.audit", b"\x00\xffnot avro", KEY, "bad"),
        Planned(MODELS_AUDIT, "a null value on models.audit", None, KEY, "bad"),  # type: ignore[arg-type]
    ]
    asyncio.run(produce(settings, [*forged_outputs, *plan]))

    answered = wait_answered(
        settings, {p.answer_id for p in [first, *refused, *after] if p.answer_id}, worker
    )
    by_id = {}
    for record in answered:
        by_id.setdefault(record.payload.command_id, []).append(record)  # type: ignore[attr-defined]
    anonymous_outcomes = by_id.pop("")
    assert [(r.type, r.payload.model) for r in anonymous_outcomes] == [  # type: ignore[attr-defined]
        ("ModelRegistered", "anon-1"),
        ("ModelRegistered", "anon-2"),
    ]
    assert all(len(records) == 1 for records in by_id.values()), "each command answered once"
    assert [r.type for r in answered[:1]] == ["ModelRegistered"]
    for p in refused:
        [outcome] = by_id[p.answer_id]
        assert outcome.type == "ModelRejected", (p.label, outcome.payload)
    assert by_id["r-stale"][0].payload.rejected_reason.startswith("version_conflict")  # type: ignore[attr-defined]
    assert by_id["r-window"][0].payload.rejected_reason.startswith("invalid_settings")  # type: ignore[attr-defined]
    assert (by_id["c-2"][0].type, by_id["c-2"][0].payload.version) == ("ModelRegistered", 4)  # type: ignore[attr-defined]
    assert (by_id["c-3"][0].type, by_id["c-3"][0].payload.version) == ("ModelDisabled", 5)  # type: ignore[attr-defined]
    assert [r.sequence for r in answered] == list(range(1, len(answered) + 1)), "one unbroken chain"
    for prev, record in itertools.pairwise(answered):
        assert record.prev_hash == prev.hash

    problems = Problems()
    seen = asyncio.run(observe(settings, [MODELS_COMMANDS]))
    for p, code in POISON:
        letters = seen.letters_at(settings, p)
        assert [d.reason_code for d in letters] == [code], (p.describe(), [d.reason for d in letters])
        check_letter(settings, p, letters[0], problems)
    for p in [first, *refused, *anonymous, *after]:
        assert not seen.letters_at(settings, p), p.describe()
    alive(worker, problems)
    crashes_in_log(worker, problems)
    problems.assert_none("models.commands poison")

    report = asyncio.run(run_audit(settings, projections=False, progress=False, grace_s=0))
    named = {(f.topic, f.partition, f.offset): f.kind for f in report.findings}
    for p in forged_outputs:
        assert named.get((settings.topic(MODELS_AUDIT), p.partition, p.offset)) == "record.undecodable", p
    assert len(named) == len(forged_outputs), report.findings


def wait_letters(settings: Settings, p: Planned) -> list[Any]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        letters = asyncio.run(observe(settings, [MODELS_COMMANDS])).letters_at(settings, p)
        if letters:
            return letters
        time.sleep(0.5)
    raise AssertionError(f"no dead letter for {p.describe()}")


def test_a_poison_command_last_in_its_partition_is_dead_lettered_once_across_a_restart(
    settings: Settings, worker: Process, log_dir: Path
) -> None:
    """No outcome follows the poison, so training.audit/models.audit cannot say it was handled: the
    next worker read it back (or had it redelivered) and dead-lettered it a second time. It now
    finds the letter in the DLQ (``agents/commanded.py``, Step 2)."""
    first = good("register slm-1", register("d-1"))
    poison = bad("undecodable bytes, last in the partition", b"\x00\xffnot avro at all")
    asyncio.run(produce(settings, [first, poison]))
    wait_answered(settings, {"d-1"}, worker)
    assert len(wait_letters(settings, poison)) == 1
    assert worker.stop() == 0
    second = start(settings, "worker-2", "worker", log_dir=log_dir)
    try:
        after = good("register slm-2", register("d-2", model="slm-2"))
        asyncio.run(produce(settings, [after]))
        answered = wait_answered(settings, {"d-1", "d-2"}, second)
        # d-2's outcome is written after every letter of its batch (and of the recovery before it)
        seen = asyncio.run(observe(settings, [MODELS_COMMANDS]))
        assert [d.reason_code for d in seen.letters_at(settings, poison)] == ["not-single-object"]
        assert [r.type for r in answered] == ["ModelRegistered", "ModelRegistered"]
    finally:
        second.stop()
