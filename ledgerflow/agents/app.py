"""The one faust App of a worker process, configured for at-least-once processing.

Choices (see docs/architecture.md, "faust-streaming behaviours the agents work around"):
- ``processing_guarantee="at_least_once"``: effects are made idempotent by offset fences
  (projections) and by deterministic ids (decisions), not by Kafka transactions.
- short session timeouts so a killed worker's partitions move on within seconds;
- no faust web server, in-memory tables only, and no topic auto-declaration: topics
  are created by ``ledgerflow.kafka.admin.ensure_topics`` with explicit configs.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import faust

from ledgerflow.agents.fence import NotCurrent
from ledgerflow.agents.snapshots import KafkaInputLog
from ledgerflow.agents.supervisor import data_dir_suffix
from ledgerflow.config import Settings
from ledgerflow.retry import delays

log = logging.getLogger(__name__)

RETRY_FIRST_S = 0.2
RETRY_MAX_S = 5.0


def create_app(settings: Settings, app_id: str = "ledgerflow-worker-aux") -> faust.App:
    """The faust App: lifecycle, timers, and the agents off the hot path (training, usage);
    the hot path (policy, projector) has its own group (``agents/batchloop.py``)."""
    app_name = settings.topic_prefix + app_id
    # faust keeps "<app id>-data/" under the state directory, not the cwd; it str.format()s the
    # path, so braces in the state directory's name are escaped.
    # Each supervised child (``worker --processes N``) has its own.
    data = f"{app_name}-data{data_dir_suffix(os.environ)}"
    datadir = str(settings.state_dir / data).replace("{", "{{").replace("}", "}}")
    return faust.App(
        app_name,
        datadir=datadir,
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


async def run_batches(stream: faust.StreamT[Any], size: int, within: float, handle: Handler) -> None:
    """Feed ``handle`` batches of messages and ack them only once it returned.

    faust's ``take_events`` acks its batch in a ``finally`` — also when the agent is
    cancelled mid-batch (shutdown) — which lets the group commit past records nobody
    processed. ``noack_take`` leaves acking to us: a batch that was not handled is not
    acked, so it is redelivered.
    """
    if not isinstance(stream, faust.Stream):  # faust's StreamT does not declare noack_take
        raise TypeError(f"run_batches needs a faust.Stream, got {type(stream).__name__}")
    async for events in stream.noack_take(size, within=within):
        await handle([event.message for event in events])
        for event in events:
            await stream.ack(event)


async def handle_until_done(
    messages: Sequence[Any],
    *,
    name: str,
    lock: asyncio.Lock | None,
    owned: Callable[[Sequence[Any]], list[Any]],
    handle: Handler,
    forget: Callable[[set[int]], None],
) -> None:
    """Handle a batch until it succeeds; a failure never stops the partition or loses records.

    1. Under ``lock`` (None: ``handle`` takes it itself), keep the messages of partitions
       this worker still owns and hand them to ``handle``.
    2. If it raises (Kafka or Redis down, a timeout, a bug), ``forget`` those partitions'
       in-memory state — the next attempt recovers it from the log, so nothing staged by
       the failed attempt survives — release the lock (a rebalance may run), back off
       (0.2 s doubling to 5 s) and go to 1.
    Record-level problems never get here: agents dead-letter them and go on. ``NotCurrent``
    (this member was expelled from its group, ``agents/fence.py``) is not retried: it is raised.
    """
    waits = delays(RETRY_FIRST_S, RETRY_MAX_S)
    delay = next(waits)
    while True:
        mine = owned(messages)
        if not mine:
            return
        try:
            if lock is None:
                await handle(mine)
            else:
                async with lock:
                    mine = owned(messages)
                    if not mine:
                        return
                    await handle(mine)
            return
        except asyncio.CancelledError:
            raise
        except NotCurrent:  # expelled from the group: not retried, the batch goes to the new owner
            forget({m.partition for m in mine})
            raise
        except Exception as exc:
            forget({m.partition for m in mine})
            log.error(
                "%s: a batch of %d record(s) failed (%r); partitions %s will be recovered from the log; "
                "retrying in %.1f s",
                name,
                len(mine),
                exc,
                sorted({m.partition for m in mine}),
                delay,
            )
        await asyncio.sleep(delay)
        delay = next(waits)


def input_log(app: faust.App, settings: Settings, topic: str) -> KafkaInputLog:
    """``topic`` (full name) read back by range, its end-offsets consumer closed when ``app`` stops
    (faust's ``on_before_shutdown``, sent by ``App.on_stop``): the agents that own one have no stop
    of their own, and the consumer was left open until the process ended."""
    inputs = KafkaInputLog(settings, topic)

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # faust's Signal declares only ``*args``
    async def close(sender: Any, **kwargs: Any) -> None:
        await inputs.close()

    return inputs
