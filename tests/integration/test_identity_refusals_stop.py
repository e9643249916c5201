"""An edge that stops while its refused-authentications record is on its way to Kafka writes it
once: ``identity.audit`` is a hash chain per edge, and a record written twice is a ``duplicate``
break the audit reports."""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer

from ledgerflow.api.app import _stop_recording
from ledgerflow.config import Settings
from ledgerflow.errors import AuthError
from ledgerflow.identity.edge import RefusalRecorder
from ledgerflow.kafka.logs import read_all
from ledgerflow.topics import IDENTITY_AUDIT

HELD_MS = 3000
"""The producer holds the record this long before sending it (its linger): the stop comes meanwhile,
as it does when the broker is slow or away at shutdown."""


def test_a_window_record_in_flight_when_the_edge_stops_is_written_once(settings: Settings) -> None:
    async def stop_while_sending() -> str:
        recorder = RefusalRecorder(settings, window_s=1)
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True, linger_ms=HELD_MS
        )
        await producer.start()
        try:
            recorder.count(AuthError("the token expired"), None)
            task = asyncio.create_task(recorder.run(producer))
            async with asyncio.timeout(5):
                while not recorder.queue:  # the window closed: its record linked and being sent
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.5)  # handed to the producer, which holds it (HELD_MS)
            await _stop_recording(task, recorder)  # the edge stops (its lifespan's clean-up)
        finally:
            await producer.stop()  # what the producer still holds is sent
        return recorder.writer.chain_id

    chain_id = asyncio.run(stop_while_sending())
    records = asyncio.run(read_all(settings, settings.topic(IDENTITY_AUDIT)))
    ours = [r for r in records if r.key == chain_id.encode()]
    assert len(ours) == 1, f"the window's record was written {len(ours)} times"
