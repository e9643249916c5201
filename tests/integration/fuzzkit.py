"""Shared machinery of the fuzz suites (tests/integration/test_fuzz_*.py).

- how much to fuzz (``LEDGERFLOW_FUZZ_EXAMPLES``, ``LEDGERFLOW_FUZZ_SEED``) and the
  hypothesis settings every fuzz test uses (seeded, no deadline, no shrinking: each
  example talks to the real broker, so a failure names its input instead);
- hostile building blocks: ids that break the id grammar, Avro records written straight
  with the wire schema (no envelope validation, so out-of-range values reach the log);
- the end checks: what the logs say was answered (decisions, training outcomes, dead
  letters), waiting until the pipeline settled, the audit with its read-model rebuild.

A check never raises on the first problem: it appends a line to a ``Problems`` list that
names the offending input, so one run reports everything that broke.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from fastavro import schemaless_writer
from hypothesis import HealthCheck, Phase
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from ledgerflow.audit.cli import run_audit
from ledgerflow.audit.report import Report
from ledgerflow.chaos.evidence import read_models_behind
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import MAGIC
from ledgerflow.contracts.ids import MAX_ID_LENGTH, is_id
from ledgerflow.contracts.registry import default_registry
from ledgerflow.dlq import read_dead_letters
from ledgerflow.errors import DecodeError
from ledgerflow.kafka.logs import RawRecord, read_all
from ledgerflow.limits import MAX_DEAD_LETTER_PREFIX_BYTES
from ledgerflow.topics import (
    CONVERSATION_EVENTS,
    POLICY_DECISIONS,
    TRAINING_AUDIT,
    USAGE_WINDOWS,
)
from tests.support.processes import Process

# How much to fuzz. CI runs the defaults (a minute or two per file); for a long run:
#   LEDGERFLOW_FUZZ_EXAMPLES=50 LEDGERFLOW_FUZZ_SEED=7 pytest tests/integration/test_fuzz_edge.py
EXAMPLES = int(os.environ.get("LEDGERFLOW_FUZZ_EXAMPLES", "3"))
SEED = int(os.environ.get("LEDGERFLOW_FUZZ_SEED", "20261129"))
SETTLE_TIMEOUT_S = float(os.environ.get("LEDGERFLOW_FUZZ_SETTLE_S", "120"))

DOCUMENTED_STATUSES = frozenset({200, 201, 202, 204, 400, 401, 403, 404, 409, 413, 414, 415, 422, 429, 431})
"""Every status the edge may answer a hostile request with (never a 5xx, never silence)."""

PROJECTED_TOPICS = (CONVERSATION_EVENTS, POLICY_DECISIONS, TRAINING_AUDIT, USAGE_WINDOWS)
BROKER_ACCEPTED_RECORD_BYTES = 1_000_118
"""The value size of issue 11's case 1: the broker takes it, a dead letter copying it would not fit."""


def fuzz_settings() -> hypothesis_settings:
    """Seeded, no deadline, no shrinking (each example is real I/O), no example database."""
    return hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=False,
        database=None,
        phases=(Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )


def knobs() -> str:
    return f"(LEDGERFLOW_FUZZ_EXAMPLES={EXAMPLES} LEDGERFLOW_FUZZ_SEED={SEED})"


def short(value: object, limit: int = 120) -> str:
    """``repr`` of ``value`` cut to ``limit`` characters, with its full length when cut."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = len(value) if isinstance(value, (str, bytes, bytearray, list, dict)) else len(text)
    return f"{text[:limit]}…(len {size})"


class Problems(list[str]):
    """What broke, one line each; ``assert_none`` fails with all of them."""

    def add(self, line: str) -> None:
        self.append(line)

    def urgent(self, line: str) -> None:
        """A problem that explains the others (a crash, a stall): listed first."""
        self.insert(0, line)

    def assert_none(self, title: str, limit: int = 80) -> None:
        if not self:
            return
        kept = "\n".join(f"  - {line if len(line) <= 600 else line[:600] + '…'}" for line in self[:limit])
        more = f"\n  … and {len(self) - limit} more" if len(self) > limit else ""
        raise AssertionError(f"{title}: {len(self)} problem(s) {knobs()}\n{kept}{more}")


# ---------------------------------------------------------------------------------------
# Ids: the grammar of ledgerflow.contracts.ids, and everything just outside it.

GOOD_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,30}", fullmatch=True)

HOSTILE_ID = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "会话-1",
            "a\r\nb",
            "a\r\nSet-Cookie: x=1",
            "a/b",
            "../etc",
            "{tag}",
            "a b",
            "-lead",
            ".dot",
            "x" * (MAX_ID_LENGTH + 1),
            "nul\x00byte",
            "tab\tid",
            "é",
            "\u202eevil",
        ]
    ),
    st.text(min_size=1, max_size=24).filter(lambda s: not is_id(s)),
)
"""Strings that are not ids: each must be refused (4xx at the edge, dead letter in the agents)."""


def fresh(prefix: str) -> str:
    """A unique id in the grammar (tests never collide with themselves)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def now_micros() -> int:
    return time.time_ns() // 1000


# ---------------------------------------------------------------------------------------
# Avro records written with the wire schema: whatever the values, they reach the log.


def wire_record(type_name: str, envelope: dict[str, Any], payload: dict[str, Any]) -> bytes:
    """Single-object Avro of ``type_name`` with exactly these fields: no envelope validation.

    ``envelope`` overrides the defaults below; ``payload`` is the whole payload record.
    Raises whatever fastavro raises when a value cannot be written at all (a str for a long).
    """
    entry = default_registry().latest(type_name)
    record: dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "type": type_name,
        "schema_version": entry.version,
        "tenant": "fz-acme",
        "subject": "fz-acme",
        "occurred_at": now_micros(),
        "producer": "fuzz",
        "trace_id": None,
        "sequence": None,
        "prev_hash": None,
        "hash": None,
        **envelope,
        "payload": payload,
    }
    out = BytesIO()
    out.write(MAGIC + entry.fingerprint)
    schemaless_writer(out, entry.wire, record)
    return out.getvalue()


def turn_payload(
    turn_id: str, content: str = "hello", tokens: int | None = 3, model: str = "slm-1", role: str = "user"
) -> dict[str, Any]:
    return {
        "turn_id": turn_id,
        "role": role,
        "content": content,
        "model": model,
        "tokens": tokens,
        "language": None,
    }


def sized_turn(size: int, tenant: str, conv: str) -> bytes:
    """A MessageSubmitted value of exactly ``size`` bytes (content padded to fit)."""
    base = len(wire_record("MessageSubmitted", _fixed(tenant, conv), turn_payload("big", "")))
    content_len = size - base
    for _ in range(8):  # the content's varint length grows with it: converge
        value = wire_record("MessageSubmitted", _fixed(tenant, conv), turn_payload("big", "x" * content_len))
        if len(value) == size:
            return value
        content_len += size - len(value)
    raise AssertionError(f"could not build a {size}-byte turn")


def _fixed(tenant: str, conv: str) -> dict[str, Any]:
    return {
        "event_id": "00000000-0000-4000-8000-000000000001",
        "tenant": tenant,
        "subject": conv,
        "occurred_at": 1_780_000_000_000_000,
    }


# ---------------------------------------------------------------------------------------
# Records planned for a topic, what answers them, and producing them.

Verdict = Literal["good", "bad", "either", "duplicate"]
"""good: must be answered (decision / outcome / applied), never dead-lettered; bad: must be
dead-lettered with a reason, never answered; either: exactly one of the two; duplicate: a
byte-for-byte copy of a good record: its id stays answered exactly once."""


@dataclass
class Planned:
    base: str  # topic base name
    label: str  # what it is, for failure messages
    value: bytes
    key: bytes | None
    verdict: Verdict
    answer_id: str | None = None  # event id (turns) or command id (training commands)
    headers: tuple[tuple[str, bytes], ...] = ()
    partition: int = -1
    offset: int = -1

    @property
    def where(self) -> str:
        return f"{self.base}[{self.partition}]@{self.offset}"

    def describe(self) -> str:
        return f"{self.where} {self.verdict}:{self.label} key={short(self.key, 40)} ({len(self.value)} B)"


async def produce(settings: Settings, plan: Sequence[Planned]) -> None:
    """Produce ``plan`` in order (one producer, acks=all) and fill in each record's position."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        acks="all",
        max_request_size=2 * 1024 * 1024,
        request_timeout_ms=30000,
    )
    await producer.start()
    try:
        futures = [
            await producer.send(settings.topic(p.base), p.value, key=p.key, headers=list(p.headers) or None)
            for p in plan
        ]
        for p, fut in zip(plan, futures, strict=True):
            meta = await fut
            p.partition, p.offset = meta.partition, meta.offset
    finally:
        await producer.stop()


@dataclass
class Observed:
    """What the logs say now: answers per id, dead letters per source position."""

    decisions: Counter[str] = field(default_factory=Counter)  # input event id -> decisions
    decision_records: dict[str, Any] = field(default_factory=dict)  # input event id -> last decision
    outcomes: Counter[str] = field(default_factory=Counter)  # command id -> training outcomes
    letters: dict[tuple[str, int, int], list[Any]] = field(default_factory=dict)  # source position -> letters
    unreadable_letters: list[str] = field(default_factory=list)
    turns_on_log: Counter[str] = field(default_factory=Counter)  # event id -> MessageSubmitted records
    turn_positions: dict[str, list[str]] = field(default_factory=dict)
    turn_subjects: dict[str, str] = field(default_factory=dict)

    def letters_at(self, settings: Settings, p: Planned) -> list[Any]:
        return self.letters.get((settings.topic(p.base), p.partition, p.offset), [])


async def observe(settings: Settings, dlq_bases: Iterable[str]) -> Observed:
    seen = Observed()
    for raw in await read_all(settings, settings.topic(POLICY_DECISIONS)):
        try:
            event = codec.decode(raw.value or b"")
        except DecodeError:
            continue
        input_id = getattr(event.payload, "input_event_id", None)
        if input_id is not None:
            seen.decisions[input_id] += 1
            seen.decision_records[input_id] = event
    for raw in await read_all(settings, settings.topic(TRAINING_AUDIT)):
        try:
            event = codec.decode(raw.value or b"")
        except DecodeError:
            continue
        command_id = getattr(event.payload, "command_id", None)
        if command_id is not None:
            seen.outcomes[command_id] += 1
    for raw in await read_all(settings, settings.topic(CONVERSATION_EVENTS)):
        turn = _turn_of(raw)
        if turn is not None:
            event_id, seen.turn_subjects[event_id] = turn[0], turn[1]
            seen.turns_on_log[event_id] += 1
            seen.turn_positions.setdefault(event_id, []).append(f"[{raw.partition}]@{raw.offset}")
    for base in dlq_bases:
        for located in await read_dead_letters(settings, base):
            if located.letter is None:
                seen.unreadable_letters.append(f"{located.dlq_topic}@{located.dlq_offset}: {located.problem}")
                continue
            d = located.letter
            seen.letters.setdefault((d.source_topic, d.partition, d.offset), []).append(d)
    return seen


def _turn_of(raw: RawRecord) -> tuple[str, str] | None:
    """(event id, conversation id) of a MessageSubmitted record, else None."""
    try:
        event = codec.decode(raw.value or b"")
    except DecodeError:
        return None
    return (event.event_id, event.subject) if event.type == "MessageSubmitted" else None


def check_letter(settings: Settings, p: Planned, letter: Any, problems: Problems) -> None:
    """A dead letter names its source exactly, says why, and keeps (a prefix of) the value."""
    if not (letter.reason or "").strip() or not (letter.reason_code or "").strip():
        problems.add(f"dead letter of {p.describe()} has no reason: {short(letter.reason)}")
    if letter.source_topic != settings.topic(p.base):
        problems.add(f"dead letter of {p.describe()} names source topic {letter.source_topic!r}")
    kept = bytes(letter.value or b"")
    if not p.value.startswith(kept) or len(kept) < min(len(p.value), MAX_DEAD_LETTER_PREFIX_BYTES):
        problems.add(
            f"dead letter of {p.describe()} keeps {len(kept)} B that are not the value's first "
            f"min({len(p.value)}, {MAX_DEAD_LETTER_PREFIX_BYTES}) bytes"
        )


def check_answers(
    settings: Settings,
    plan: Sequence[Planned],
    seen: Observed,
    problems: Problems,
    *,
    exactly_one_letter: frozenset[str],
) -> None:
    """Every good record answered exactly once and never dead-lettered; every bad one
    dead-lettered with a reason and never answered; an ``either`` one exactly one of the two.

    ``exactly_one_letter``: topics one agent (a consumer group) owns, so a poison record has
    exactly one dead letter; elsewhere (topics every worker reads in full) at least one.
    """
    for p in plan:
        answers = _answers(p, seen)
        letters = seen.letters_at(settings, p)
        for letter in letters:
            check_letter(settings, p, letter, problems)
        if p.verdict == "good":
            if answers is not None and answers != 1:
                problems.add(f"good record answered {answers} times (want 1): {p.describe()}")
            if letters:
                problems.add(f"good record dead-lettered ({letters[0].reason}): {p.describe()}")
        elif p.verdict == "duplicate":
            if answers is not None and answers != 1:
                problems.add(f"duplicated record's id answered {answers} times (want 1): {p.describe()}")
        elif p.verdict == "bad":
            if answers:
                problems.add(f"bad record answered {answers} times (want 0): {p.describe()}")
            if not letters:
                problems.add(f"bad record not dead-lettered: {p.describe()}")
            elif p.base in exactly_one_letter and len(letters) != 1:
                problems.add(f"bad record dead-lettered {len(letters)} times (want 1): {p.describe()}")
        else:  # either
            total = (answers or 0) + (len(letters) if p.base in exactly_one_letter else min(len(letters), 1))
            if total != 1:
                problems.add(
                    f"record answered {answers or 0} times and dead-lettered {len(letters)} times "
                    f"(want exactly one of the two): {p.describe()}"
                )


def _answers(p: Planned, seen: Observed) -> int | None:
    if p.answer_id is None:
        return None
    if p.base == CONVERSATION_EVENTS:
        return seen.decisions[p.answer_id]
    return seen.outcomes[p.answer_id]


def unexpected_letters(
    settings: Settings, plan: Sequence[Planned], seen: Observed, problems: Problems
) -> None:
    """Dead letters at positions nobody planned (a good record of an earlier phase, say)."""
    planned = {(settings.topic(p.base), p.partition, p.offset) for p in plan}
    for where, letters in seen.letters.items():
        if where not in planned:
            problems.add(f"dead letter for an unplanned record {where}: {letters[0].reason}")
    problems.extend(f"unreadable dead letter {u}" for u in seen.unreadable_letters)


# ---------------------------------------------------------------------------------------
# Waiting and the closing checks.


def wait_until(
    condition: Any, what: str, worker: Process | None, timeout: float = SETTLE_TIMEOUT_S
) -> tuple[bool, str]:
    """Poll ``condition() -> (done, state)`` until done, the worker exits, or ``timeout``."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        done, state = condition()
        if done:
            return True, state
        if worker is not None and worker.popen.poll() is not None:
            return False, f"{what}: the worker exited with {worker.popen.returncode} ({state})"
        time.sleep(0.5)
    return False, f"{what}: not within {timeout:.0f} s ({state})"


async def read_models_caught_up(settings: Settings) -> tuple[bool, str]:
    """Whether the live read models applied every record now on the projected topics."""
    complete, behind, _ = await read_models_behind(settings, PROJECTED_TOPICS)
    return complete and not behind, f"read models behind on {behind[:4]} (complete={complete})"


def audit(settings: Settings) -> Report:
    """``ledgerflow audit`` (logs and read models rebuilt and diffed), in process."""
    return asyncio.run(run_audit(settings, projections=True, progress=False))


def audit_problems(
    report: Report, problems: Problems, *, allowed: set[tuple[str, int, int]] | None = None
) -> None:
    """Each finding of ``report`` (but those at ``allowed`` positions) as a problem."""
    for finding in report.ordered():
        if allowed is not None and (finding.topic, finding.partition, finding.offset) in allowed:
            continue
        problems.add(f"audit: {finding}")
    hidden = report.total - len(report.findings)
    if hidden > 0:
        problems.add(f"audit: … and {hidden} more findings")


def alive(proc: Process, problems: Problems) -> None:
    if proc.popen.poll() is not None:
        problems.urgent(
            f"the {proc.name} exited with {proc.popen.returncode}; its log ends:\n{proc.log_tail(25)}"
        )


def crashes_in_log(proc: Process, problems: Problems) -> None:
    """An agent that crashed (faust logs ``Crashed reason=``, and may restart it) is a crash,
    and so is any traceback: each marker once, with its first line and count."""
    lines = proc.log.read_text(errors="replace").splitlines()
    for marker in ("Crashed reason=", "ProducerSendError", "Traceback (most recent call last)"):
        hits = [i for i, line in enumerate(lines) if marker in line]
        if hits:
            first = hits[0]
            context = _traceback_tail(lines, first) if marker.startswith("Traceback") else lines[first]
            problems.urgent(f"the {proc.name} log has {len(hits)} × {marker!r}; first: {short(context, 400)}")


def _traceback_tail(lines: list[str], start: int) -> str:
    """The exception line that ends the traceback starting at ``start``."""
    for line in lines[start + 1 : start + 80]:
        if line and not line.startswith(" ") and not line.startswith("Traceback"):
            return line
    return lines[start]
