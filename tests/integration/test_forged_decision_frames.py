"""A ``PolicyDecision`` written straight to ``policy.decisions`` (any producer, bypassing the policy
agent) for a real turn, on a real edge, worker, broker and Redis.

The forgeries say ``allow`` for a turn the rules redact, before the policy agent decided it: one
chained with a made-up link (its hash is the hash of its content: anyone can compute that) and one
without chain fields. The projector refuses both (``bad-genesis``, ``unchained``).

- A waiting ``POST /v1/conversation/step`` used to answer with the first decision frame naming its
  turn, so with the forger's ``allow``. It now answers only with the decision the projector
  accepted (the read model's): the genuine one, which follows the forgeries.
- The SSE hub still streams both forgeries as decision frames: a known gap, not tested as if it
  were closed (what a fix needs is in docs/sse.md, "Forged decisions").
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from ledgerflow.api.hub import partition_for
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ZERO_HASH, compute_hash
from ledgerflow.contracts.events import Event
from ledgerflow.kafka.logs import read_all
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS
from tests.integration.edgekit import bearer
from tests.integration.test_sse_hostile_records import produce
from tests.integration.test_sse_streams import PARTITIONS, decision_for, running_edge
from tests.support.processes import Process, start

TIMEOUT_S = 60.0
REDACTED = "please send the invoice to bob@example.com"  # the built-in pack redacts an email address
MADE_UP = "5a" * 32


def chained(event: Event, sequence: int, prev_hash: str) -> Event:
    """``event`` with chain fields whose hash is the hash of its content (what a forger computes)."""
    digest = compute_hash(event.with_chain(sequence, prev_hash, ZERO_HASH).to_json(), prev_hash)
    return event.with_chain(sequence, prev_hash, digest)


def forgeries(genuine_turn: Event) -> list[Event]:
    """``allow`` for ``genuine_turn``: linked to nothing (sequence 2 after a made-up hash), and unchained."""
    allow = decision_for(genuine_turn)
    return [chained(allow, 2, MADE_UP), allow]


def _turn_on_log(settings: Settings, conv: str) -> Event:
    """The step's turn, once the edge published it."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        for raw in asyncio.run(read_all(settings, settings.topic(CONVERSATION_EVENTS))):
            event = codec.decode(raw.value or b"")
            if event.subject == conv and event.type == "MessageSubmitted":
                return event
        time.sleep(0.2)
    raise AssertionError(f"the step's turn of {conv} never reached the log")


def _write(settings: Settings, decisions: list[Event]) -> None:
    records = [
        (POLICY_DECISIONS, d, d.subject.encode(), partition_for(d.subject, PARTITIONS)) for d in decisions
    ]
    asyncio.run(produce(settings, records))


def _step(base: str, settings: Settings, conv: str, wait: float) -> httpx.Response:
    return httpx.post(
        f"{base}/v1/conversation/step",
        json={"conversation_id": conv, "content": REDACTED},
        headers=bearer(settings) | {"Idempotency-Key": uuid.uuid4().hex},
        params={"wait": wait},
        timeout=wait + 20,
    )


def _decided_worker(settings: Settings, log_dir: Path, base: str) -> Process:
    """A worker that has decided a turn (so it is past its start-up and reads every partition)."""
    worker = start(settings, "worker", "worker", log_dir=log_dir)
    deadline = time.monotonic() + TIMEOUT_S
    while (warm := _step(base, settings, f"warm-{uuid.uuid4().hex[:8]}", 10)).status_code != 200:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        assert time.monotonic() < deadline, f"the worker decided nothing: {warm.text}"
    return worker


@pytest.mark.timeout(300)
def test_a_waiting_step_answers_the_genuine_decision_not_a_forged_one(
    settings: Settings, log_dir: Path
) -> None:
    conv = f"c-forged-{uuid.uuid4().hex[:8]}"
    with running_edge(settings, log_dir) as edge:
        worker = _decided_worker(settings, log_dir, edge.base)
        answers: list[httpx.Response] = []
        try:
            os.kill(worker.popen.pid, signal.SIGSTOP)  # the turn stays undecided while the forger writes
            waiting = threading.Thread(target=lambda: answers.append(_step(edge.base, settings, conv, 20)))
            waiting.start()
            forged = forgeries(_turn_on_log(settings, conv))
            _write(settings, forged)
            time.sleep(1.0)  # the old step answered with the first forgery by now
            os.kill(worker.popen.pid, signal.SIGCONT)
            waiting.join(TIMEOUT_S)
        finally:
            os.kill(worker.popen.pid, signal.SIGCONT)
            worker.stop()
    assert len(answers) == 1, "the step did not return"
    answer = answers[0]
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["decision_event_id"] not in {f.event_id for f in forged}, body
    assert body["outcome"] == "redact" and "redact-contact-details" in body["matched_rules"], body
