"""A dead letter written straight into a command topic's DLQ does not make the agent drop the
command it names, on the real broker and a real worker.

The training and models agents read their command topic's DLQ back when they recover a partition,
so that a command dead-lettered before a crash is not dead-lettered again (``agents/commanded.py``,
Step 2). Before, they trusted every letter there: one naming an offset not yet answered — written
by anyone who can write Kafka, before or after the command — made the next owner skip that command
without an outcome or a letter of its own: an admin's command lost. A letter only keeps the agent
from writing a second letter; a command that decodes and is decided is answered.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts.codec import encode_dead_letter
from ledgerflow.contracts.deadletters import shape_dead_letter
from ledgerflow.kafka.placement import placement
from ledgerflow.topics import MODELS_COMMANDS, dlq_of
from tests.integration.fuzzkit import observe, produce
from tests.integration.test_models_poison import KEY, good, register, wait_answered
from tests.support.processes import start

PARTITIONS = 3  # models.commands (ledgerflow/topics.py)


async def forge_letters(settings: Settings, offsets: range) -> None:
    """Letters naming ``models.commands[<the tenant's partition>]@offset`` for each offset."""
    source = settings.topic(MODELS_COMMANDS)
    partition = placement(KEY, PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for offset in offsets:
            letter = shape_dead_letter(
                source_topic=source,
                partition=partition,
                offset=offset,
                key=KEY,
                value=b"forged",
                headers=(),
                reason="not-single-object: forged",
                agent="models",
                failed_at=time.time_ns() // 1000,
            )
            await producer.send_and_wait(dlq_of(source), encode_dead_letter(letter), key=KEY)
    finally:
        await producer.stop()


def test_a_forged_letter_in_the_commands_dlq_does_not_drop_the_command_it_names(
    settings: Settings, log_dir: Path
) -> None:
    asyncio.run(forge_letters(settings, range(0, 4)))  # the first commands the tenant's partition takes
    commands = [
        good("register slm-1", register("f-1")),
        good("register slm-2", register("f-2", model="slm-2")),
    ]
    asyncio.run(produce(settings, commands))  # offsets 0 and 1, before any worker recovered the partition
    assert [(c.partition, c.offset) for c in commands] == [
        (placement(KEY, PARTITIONS), 0),
        (placement(KEY, PARTITIONS), 1),
    ]
    worker = start(settings, "worker", "worker", log_dir=log_dir)
    try:
        answered = wait_answered(settings, {"f-1", "f-2"}, worker)
        assert [r.type for r in answered] == ["ModelRegistered", "ModelRegistered"]
        seen = asyncio.run(observe(settings, [MODELS_COMMANDS]))
        for command in commands:  # answered, and not dead-lettered by the agent
            ours = [d for d in seen.letters_at(settings, command) if d.reason != "not-single-object: forged"]
            assert ours == [], (command.label, ours)
    finally:
        worker.stop()
