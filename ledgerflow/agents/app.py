"""The one faust App of a worker process, configured for at-least-once processing.

Choices (see docs/architecture.md and PITFALLS.md):
- ``processing_guarantee="at_least_once"``: effects are made idempotent by offset fences
  (projections) and by deterministic ids (decisions), not by Kafka transactions.
- short session timeouts so a killed worker's partitions move on within seconds;
- no faust web server, in-memory tables only, and no topic auto-declaration: topics
  are created by ``ledgerflow.kafka_admin.ensure_topics`` with explicit configs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import faust

from ledgerflow.config import Settings


def create_app(settings: Settings, app_id: str = "ledgerflow-worker") -> faust.App:
    return faust.App(
        settings.topic_prefix + app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        processing_guarantee="at_least_once",
        topic_allow_declare=False,
        topic_disable_leader=True,
        broker_session_timeout=10.0,
        broker_heartbeat_interval=2.0,
        broker_rebalance_timeout=10.0,
        # Never wait for buffered events on rebalance: see agents/ownership.py.
        stream_wait_empty=False,
        broker_commit_every=1000,
        broker_commit_interval=0.5,
        broker_max_poll_records=1000,
        stream_buffer_maxsize=4096,
        producer_linger=0.005,
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        # Workers commit their own progress; they never need faust's table recovery.
        table_standby_replicas=0,
    )


def raw_topic(app: faust.App, *names: str) -> faust.TopicT:
    """A topic of undecoded bytes: decoding is ours, so poison records reach the DLQ."""
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        allow_empty=True,
    )


Handler = Callable[[list[Any]], Awaitable[None]]


async def run_batches(stream: faust.StreamT, size: int, within: float, handle: Handler) -> None:
    """Feed ``handle`` batches of messages and ack them only once it returned.

    faust's ``take_events`` acks its batch in a ``finally`` — also when the agent is
    cancelled mid-batch (shutdown) — which lets the group commit past records nobody
    processed. ``noack_take`` leaves acking to us: a batch that was not handled is not
    acked, so it is redelivered.
    """
    async for events in stream.noack_take(size, within=within):
        await handle([event.message for event in events])
        for event in events:
            await stream.ack(event)
