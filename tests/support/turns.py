"""Turns written straight to ``conversation.events`` (no edge, no worker): the bursts SSE tests need."""

from __future__ import annotations

import time

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.topics import CONVERSATION_EVENTS


async def publish_turns(
    settings: Settings, conversation: str, count: int, content: str, *, tenant: str = "acme"
) -> None:
    """``count`` user turns of ``content`` in ``conversation``, produced with acks=all and flushed."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", linger_ms=50)
    await producer.start()
    try:
        now = time.time_ns() // 1000
        for i in range(count):
            event = new_event(
                "MessageSubmitted",
                tenant=tenant,
                subject=conversation,
                producer="test",
                occurred_at_micros=now + i,
                payload=MessageSubmitted(f"t{i}", "user", content, "slm-1", None),
            )
            await producer.send(
                settings.topic(CONVERSATION_EVENTS), codec.encode(event), key=conversation.encode()
            )
        await producer.flush()
    finally:
        await producer.stop()
