"""Records written straight to ``training.audit`` change neither the training state every policy agent
decides with nor what the edge shows (``kafka/reference.py``, ``contracts/outcome_trust.py``), on
the real broker, a real worker and a real edge.

Training is enabled by the admin through the edge; then, while the worker runs, a copy of the
real outcome, an unchained ``TrainingDisabled`` and one linked to the real chain head but wrongly
hashed are appended to the tenant's partition. Taken on trust (the old reader),
the forged disable turned training off for every policy decision and for the edge's
``/v1/evaluate``. Now both still see the genuine state (enabled, version 1), the worker's log names
each forged record, and the admin's next command is answered and linked to the real head.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted, TrainingDisabled
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.logs import RawRecord, read_all
from ledgerflow.policy.wire import head_after
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, TRAINING_AUDIT
from tests.integration.test_training_and_usage import _post
from tests.support.processes import Process

TENANT = "fr-acme"
TIMEOUT_S = 90.0


async def _send(settings: Settings, topic: str, records: list[tuple[bytes, bytes, int | None]]) -> None:
    """``(key, value, partition)`` straight to Kafka."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, partition in records:
            await producer.send_and_wait(settings.topic(topic), value, key=key, partition=partition)
    finally:
        await producer.stop()


def _audit(settings: Settings) -> list[tuple[RawRecord, Event]]:
    raws = asyncio.run(read_all(settings, settings.topic(TRAINING_AUDIT)))
    return [(r, codec.decode(r.value or b"")) for r in raws]


def forged_disable(real: Event) -> tuple[Event, Event]:
    """An unchained ``TrainingDisabled`` of ``real``'s tenant by an intruder, and the same record
    linked after ``real`` with a wrong hash."""
    disable = new_event(
        TrainingDisabled.TYPE,
        tenant=real.tenant,
        subject=real.tenant,
        payload=TrainingDisabled("forged-cmd", 2, "intruder", "forged", None, None),
        producer="ledgerflow-training",
        occurred_at_micros=time.time_ns() // 1000,
    )
    return disable, dataclasses.replace(link_event(disable, head_after(real)), hash="f" * 64)


def _forged_disables(real: Event) -> list[bytes]:
    disable, wrong_hash = forged_disable(real)
    return [codec.encode(real), codec.encode(disable), codec.encode(wrong_hash)]  # the last one counts


def _evaluate(edge: str, token: str) -> tuple[bool, int]:
    answer = httpx.post(
        f"{edge}/v1/evaluate",
        json={"content": "hello"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["training_enabled"], body["training_version"]


def _decision_training(settings: Settings, worker: Process) -> tuple[bool, int]:
    """Submit a turn straight to Kafka; the training state its decision was made with."""
    conversation = f"conv-{uuid.uuid4().hex[:8]}"
    turn = new_event(
        MessageSubmitted.TYPE,
        tenant=TENANT,
        subject=conversation,
        payload=MessageSubmitted("turn-1", "user", "hello", "slm-1"),
        producer="test",
        occurred_at_micros=time.time_ns() // 1000,
    )
    asyncio.run(_send(settings, CONVERSATION_EVENTS, [(conversation.encode(), codec.encode(turn), None)]))
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        for raw in asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS))):
            decision = codec.decode(raw.value or b"")
            if decision.payload.input_event_id == turn.event_id:
                return decision.payload.training_enabled, decision.payload.training_version
        time.sleep(0.5)
    raise AssertionError(f"no decision within {TIMEOUT_S:.0f} s\n{worker.log_tail()}")


def test_a_forged_training_record_changes_neither_the_policy_agent_nor_the_edge(
    settings: Settings, worker: Process, edge: str, tokens, log_dir: Path
) -> None:
    admin = tokens(TENANT, "admin")
    enabled = _post(edge, admin, "/v1/training/enable", {"reason": "fine-tune", "ttl_seconds": 3600})
    assert enabled.status_code == 200, enabled.text
    assert (enabled.json()["outcome"], enabled.json()["version"]) == ("TrainingEnabled", 1)
    [(real_raw, real)] = _audit(settings)

    forged = _forged_disables(real)
    asyncio.run(_send(settings, TRAINING_AUDIT, [(TENANT.encode(), v, real_raw.partition) for v in forged]))

    assert _evaluate(edge, admin) == (True, 1), "the edge's reference data took a forged record"
    assert _decision_training(settings, worker) == (True, 1), "the policy agent decided with a forged state"
    log = worker.log.read_text(errors="replace")
    topic = settings.topic(TRAINING_AUDIT)
    for offset in range(real_raw.offset + 1, real_raw.offset + 1 + len(forged)):
        where = f"{topic}[{real_raw.partition}]@{offset} is not the agents' own"
        assert where in log, f"no warning naming {where}:\n{worker.log_tail()}"

    disabled = _post(edge, admin, "/v1/training/disable", {"reason": "done"})
    assert disabled.status_code == 200, disabled.text
    assert (disabled.json()["outcome"], disabled.json()["version"]) == ("TrainingDisabled", 2)
    answer = next(e for _, e in _audit(settings) if e.event_id == disabled.json()["audit_event_id"])
    assert (answer.sequence, answer.prev_hash) == (2, real.hash), "linked to the real head"
    assert _evaluate(edge, admin) == (False, 2)
    assert _decision_training(settings, worker) == (False, 2)


def test_a_linked_forgery_in_another_partition_changes_nothing(
    settings: Settings, worker: Process, edge: str, tokens, log_dir: Path
) -> None:
    """A ``TrainingDisabled`` that links to the real head and hashes correctly (the chain has no
    secret), written to another partition of ``training.audit``: the old reader took it (its heads
    were per tenant whatever the partition), turned training off, then refused the agent's real
    next outcome, so the admin's next command was never answered. The agent writes a tenant's
    outcomes only in its tenant's partition: the forgery is skipped, and the real chain goes on."""
    admin = tokens(TENANT, "admin")
    enabled = _post(edge, admin, "/v1/training/enable", {"reason": "fine-tune", "ttl_seconds": 3600})
    assert enabled.status_code == 200, enabled.text
    [(real_raw, real)] = _audit(settings)

    disable, _ = forged_disable(real)
    linked = link_event(disable, head_after(real))  # correctly linked and hashed
    partitions = asyncio.run(partition_counts(settings, [settings.topic(TRAINING_AUDIT)]))
    elsewhere = (real_raw.partition + 1) % partitions[settings.topic(TRAINING_AUDIT)]
    asyncio.run(_send(settings, TRAINING_AUDIT, [(TENANT.encode(), codec.encode(linked), elsewhere)]))

    assert _evaluate(edge, admin) == (True, 1), "the edge's reference data took the forgery"
    assert _decision_training(settings, worker) == (True, 1), "the policy agent decided with a forged state"
    where = f"{settings.topic(TRAINING_AUDIT)}[{elsewhere}]@0 is not the agents' own"
    assert where in worker.log.read_text(errors="replace"), f"no warning naming {where}"

    disabled = _post(edge, admin, "/v1/training/disable", {"reason": "done"})
    assert disabled.status_code == 200, disabled.text
    assert (disabled.json()["outcome"], disabled.json()["version"]) == ("TrainingDisabled", 2)
    assert _evaluate(edge, admin) == (False, 2)
