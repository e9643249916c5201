"""Records written straight to ``training.audit`` and ``models.audit`` by someone else, on the real
broker and a real worker, never steer the training and models agents' recovery
(``contracts/outcome_trust.py``, ``agents/commanded.py`` Step 1).

A copy of a real outcome whose ``lf-input`` header says input 10**15 was answered is appended to
each topic while the worker runs; a new worker then recovers both partitions from their logs.
Taken on trust, the header made every later command of the partition look answered: the next
command was never decided. It now is, once, linked to the real chain head, and the worker's log
names each forged record.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import DisableTraining, EnableTraining, RegisterModel, SetModelEnabled
from ledgerflow.kafka.logs import RawRecord, read_all
from ledgerflow.topics import (
    INPUT_HEADER,
    MODELS_AUDIT,
    MODELS_COMMANDS,
    TRAINING_AUDIT,
    TRAINING_COMMANDS,
    input_offset_of,
)
from tests.support.processes import Process, start

TENANT = "fo-acme"
FAR = 10**15
TIMEOUT_S = 90.0
AGENTS = ("--agents", "training,models")


def _command(payload: EnableTraining | DisableTraining | RegisterModel | SetModelEnabled) -> Event:
    return new_event(
        type(payload).TYPE,
        tenant=TENANT,
        subject=TENANT,
        payload=payload,
        producer="edge:test",
        occurred_at_micros=time.time_ns() // 1000,
    )


async def _send(
    settings: Settings, records: list[tuple[str, bytes, int | None, list[tuple[str, bytes]]]]
) -> None:
    """``(base topic, value, partition, headers)`` straight to Kafka, keyed by the tenant."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for topic, value, partition, headers in records:
            await producer.send_and_wait(
                settings.topic(topic), value, key=TENANT.encode(), partition=partition, headers=headers
            )
    finally:
        await producer.stop()


def _commands(settings: Settings, *events: Event) -> None:
    def topic(e: Event) -> str:
        return (
            MODELS_COMMANDS if isinstance(e.payload, RegisterModel | SetModelEnabled) else TRAINING_COMMANDS
        )

    asyncio.run(_send(settings, [(topic(e), codec.encode(e), None, []) for e in events]))


def _outcomes(settings: Settings, topic: str) -> list[tuple[RawRecord, Event]]:
    return [(r, codec.decode(r.value or b"")) for r in asyncio.run(read_all(settings, settings.topic(topic)))]


def _wait(
    settings: Settings, wanted: dict[str, set[str]], worker: Process
) -> dict[str, list[tuple[RawRecord, Event]]]:
    """Until each outcome topic of ``wanted`` answers every command id given."""
    deadline = time.monotonic() + TIMEOUT_S
    found: dict[str, list[tuple[RawRecord, Event]]] = {}
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        found = {topic: _outcomes(settings, topic) for topic in wanted}
        answered = {
            topic: {getattr(e.payload, "command_id", None) for _, e in records}
            for topic, records in found.items()
        }
        if all(answered[topic] >= ids for topic, ids in wanted.items()):
            return found
        time.sleep(0.5)
    raise AssertionError(f"not answered within {TIMEOUT_S:.0f} s: want {wanted}\n{worker.log_tail()}")


def test_a_forged_outcome_claiming_a_far_input_does_not_swallow_the_next_command_after_a_restart(
    settings: Settings, log_dir: Path
) -> None:
    first = start(settings, "worker-1", "worker", *AGENTS, log_dir=log_dir)
    try:
        _commands(
            settings,
            _command(EnableTraining("fo-t1", "root", "fine-tune", 3600, None)),
            _command(RegisterModel("fo-m1", "root", "slm-1", "local", 8192)),
        )
        found = _wait(settings, {TRAINING_AUDIT: {"fo-t1"}, MODELS_AUDIT: {"fo-m1"}}, first)
        forged: dict[str, tuple[RawRecord, Event]] = {}
        for topic in (TRAINING_AUDIT, MODELS_AUDIT):
            [(raw, record)] = found[topic]
            forged[topic] = (raw, record)
            # a copy of the real outcome, answering "input 10**15", written from outside
            asyncio.run(
                _send(
                    settings, [(topic, raw.value or b"", raw.partition, [(INPUT_HEADER, str(FAR).encode())])]
                )
            )
    finally:
        assert first.stop() == 0, first.log_tail()

    second = start(settings, "worker-2", "worker", *AGENTS, log_dir=log_dir)
    try:
        _commands(
            settings,
            _command(DisableTraining("fo-t2", "root", "done", None, None)),
            _command(SetModelEnabled("fo-m2", "root", "slm-1", False)),
        )
        found = _wait(settings, {TRAINING_AUDIT: {"fo-t2"}, MODELS_AUDIT: {"fo-m2"}}, second)
    finally:
        assert second.stop() == 0, second.log_tail()

    log = second.log.read_text(errors="replace")
    for topic, want in ((TRAINING_AUDIT, "TrainingDisabled"), (MODELS_AUDIT, "ModelDisabled")):
        real_raw, real = forged[topic]
        records = found[topic]
        assert [e.type for _, e in records] == [real.type, real.type, want], "one forged copy, one answer"
        copy_raw, _ = records[1]
        assert copy_raw.offset == real_raw.offset + 1
        answer_raw, answer = records[2]
        assert (answer.sequence, answer.prev_hash) == (2, real.hash), "linked to the real head"
        assert input_offset_of(answer_raw.headers) == 1, "the second command of its partition"
        where = f"{settings.topic(topic)}[{copy_raw.partition}]@{copy_raw.offset}"
        assert f"{where} is not the agent's own" in log, f"no warning naming {where}:\n{second.log_tail()}"
