"""Records written straight to ``policy.decisions`` by someone else, on the real broker and Redis,
never steer the policy agent's recovery (``agents/trusted.py``).

Three forgeries at a time: a copy of a real decision whose ``lf-input`` says input 10**15 was
decided, a decision chained after a real head with a made-up hash, and one with a hash of its
content but a made-up link. One set is written while a worker runs (its later decisions and
snapshot cover them), another while no worker runs; then two new workers start together (a
restart and a rebalance). Every turn still gets exactly one genuine decision, every chain of
genuine decisions is unbroken, and the audit reports the forged records and nothing else.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from ledgerflow.audit.cli import run_audit
from ledgerflow.chaos.evidence import read_models_behind
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ZERO_HASH, Located, compute_hash, verify
from ledgerflow.contracts.events import Event, derived_event_id
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.kafka.logs import RawRecord, read_all
from ledgerflow.policy.wire import chain_key
from ledgerflow.topics import CONVERSATION_EVENTS, INPUT_HEADER, POLICY_DECISIONS, input_offset_of
from ledgerflow.traffic import publish
from tests.integration.test_crash import _events
from tests.support.processes import Process, free_port, start

HOT_PATH = ("--agents", "policy,projector")


def _worker(settings: Settings, name: str, log_dir: Path) -> Process:
    """A hot-path worker with its metrics on a port of its own (two run at once)."""
    metrics = {"LEDGERFLOW_WORKER_METRICS": f"127.0.0.1:{free_port()}"}
    return start(settings, name, "worker", *HOT_PATH, log_dir=log_dir, extra_env=metrics)


HUGE = 10**15

Position = tuple[int, int]  # (partition, offset) in policy.decisions


def _turn_ids(events: list[Event]) -> list[str]:
    return [e.event_id for e in events if e.type == "MessageSubmitted"]


def _forged(genuine: Event, prev_hash: str, *, rehash: bool) -> Event:
    """A decision (outcome allow, a made-up input) one past ``genuine`` in its chain."""
    assert isinstance(genuine.payload, PolicyDecision) and genuine.sequence is not None
    fake_input = derived_event_id("forged", f"{genuine.event_id}/{prev_hash}")
    forged = dataclasses.replace(
        genuine,
        event_id=derived_event_id("PolicyDecision", fake_input),
        payload=dataclasses.replace(genuine.payload, input_event_id=fake_input, outcome="allow", score=0.0),
    )
    sequence = genuine.sequence + 1
    digest = compute_hash(forged.with_chain(sequence, prev_hash, ZERO_HASH).to_json(), prev_hash)
    return forged.with_chain(sequence, prev_hash, digest if rehash else "ab" * 32)


def _last_decision_of(decisions: list[RawRecord], subject: str) -> RawRecord:
    return [r for r in decisions if codec.decode(r.value or b"").subject == subject][-1]


async def _forge(settings: Settings, continuing: list[str]) -> set[Position]:
    """The three forgeries, straight to ``policy.decisions``: the copy after the log's last decision,
    the chained ones after the last decisions of two conversations in ``continuing`` (which get
    more turns later). Their positions."""
    decisions = await read_all(settings, settings.topic(POLICY_DECISIONS))
    last = decisions[-1]
    copy_headers = [(INPUT_HEADER, str(HUGE).encode())]
    targets = [_last_decision_of(decisions, subject) for subject in continuing[:2]]
    records = [(last, last.value or b"", copy_headers)]
    for raw, rehash in zip(targets, (False, True), strict=True):
        head = codec.decode(raw.value or b"")
        prev = (head.hash or "") if not rehash else "5a" * 32
        headers = [(INPUT_HEADER, str(input_offset_of(raw.headers)).encode())]  # a plausible input
        records.append((raw, codec.encode(_forged(head, prev, rehash=rehash)), headers))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        placed = set()
        for raw, value, headers in records:
            meta = await producer.send_and_wait(
                settings.topic(POLICY_DECISIONS), value, key=raw.key, partition=raw.partition, headers=headers
            )
            placed.add((meta.partition, meta.offset))
        return placed
    finally:
        await producer.stop()


def _continuing(decided: list[Event], later: list[Event]) -> list[str]:
    """Conversations with a decision already and turns in ``later``."""
    started = {e.subject for e in decided if e.type == "MessageSubmitted"}
    return sorted({e.subject for e in later if e.type == "MessageSubmitted"} & started)


def _genuine(settings: Settings, forged: set[Position]) -> list[RawRecord]:
    decisions = asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS)))
    return [r for r in decisions if (r.partition, r.offset) not in forged]


def _wait_decided(
    settings: Settings, turn_ids: list[str], forged: set[Position], workers: list[Process], timeout: float
) -> None:
    """Until every turn of ``turn_ids`` has a genuine decision and the read models applied every record."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        for w in workers:
            assert w.popen.poll() is None, f"{w.name} exited:\n{w.log_tail()}"
        decided = {_input_of(r) for r in _genuine(settings, forged)}
        missing = set(turn_ids) - decided
        complete, behind, _ = asyncio.run(
            read_models_behind(settings, (POLICY_DECISIONS, CONVERSATION_EVENTS))
        )
        if not missing and complete and not behind:
            return
        state = (
            f"{len(missing)} of {len(turn_ids)} turns without a genuine decision; read models behind {behind}"
        )
        time.sleep(1.0)
    logs = "\n".join(f"--- {w.name}:\n{w.log_tail(15)}" for w in workers)
    raise AssertionError(f"not settled within {timeout:.0f} s: {state}\n{logs}")


def _input_of(raw: RawRecord) -> str:
    payload = codec.decode(raw.value or b"").payload
    assert isinstance(payload, PolicyDecision)
    return payload.input_event_id


@pytest.mark.timeout(600)
def test_forged_decisions_written_straight_to_kafka_never_steer_a_recovering_worker(
    settings: Settings, log_dir: Path
) -> None:
    events, _ = _events(31, 1_500)
    third = len(events) // 3
    phases = [events[:third], events[third : 2 * third], events[2 * third :]]
    forged: set[Position] = set()
    workers = [_worker(settings, "worker-1", log_dir)]
    try:
        asyncio.run(publish(settings, iter(phases[0]), progress_every_s=0))
        _wait_decided(settings, _turn_ids(phases[0]), forged, workers, timeout=180)
        forged |= asyncio.run(_forge(settings, _continuing(phases[0], phases[1])))  # while it runs
        asyncio.run(publish(settings, iter(phases[1]), progress_every_s=0))
        _wait_decided(settings, _turn_ids(events[: 2 * third]), forged, workers, timeout=120)
        time.sleep(1.5)  # a snapshot saved after the last batch, covering the first forgeries
        workers[0].stop()
        forged |= asyncio.run(_forge(settings, _continuing(events[: 2 * third], phases[2])))  # at rest
        workers += [_worker(settings, f"worker-{n}", log_dir) for n in (2, 3)]
        asyncio.run(publish(settings, iter(phases[2]), progress_every_s=0))
        _wait_decided(settings, _turn_ids(events), forged, workers[1:], timeout=150)
        report = asyncio.run(run_audit(settings, projections=True, progress=False))
        skipped = "".join(w.log.read_text(errors="replace") for w in workers[1:])
    finally:
        for w in workers:
            w.stop()

    genuine = _genuine(settings, forged)
    counts = Counter(_input_of(r) for r in genuine)
    assert set(counts) == set(_turn_ids(events)) and set(counts.values()) == {1}, (
        f"{sum(n > 1 for n in counts.values())} turns decided twice, "
        f"{len(set(_turn_ids(events)) - set(counts))} never"
    )
    records = [(r, codec.decode(r.value or b"")) for r in genuine]
    breaks = verify(Located(r.topic, r.partition, r.offset, chain_key(d), d.to_json()) for r, d in records)
    assert breaks == [], [str(b) for b in breaks[:5]]
    where = {(f.partition, f.offset) for f in report.findings}
    assert where == forged, f"the audit found {sorted(where)}, the forgeries are at {sorted(forged)}"
    assert all(f.topic == settings.topic(POLICY_DECISIONS) for f in report.findings)
    assert "not taken as this agent's own at recovery: beyond-input" in skipped
