"""The raw limit of the broker and client: aiokafka ``getmany`` + ``send_batch``, nothing else.

    python -m ledgerflow.bench.passthrough --source T --sink T2 --group G

A consumer-group member reads ``source`` in batches of up to 1000 records (faust's
``broker_max_poll_records`` in our worker), copies each partition's records into one
``send_batch`` to the same partition of ``sink`` with an idempotent ``acks=all``
producer (as the policy agent's), waits for the acks, and commits offsets every 0.5 s
(``broker_commit_interval``): no decoding, no logic, no Redis. Runs until SIGTERM;
prints ``{"ready": …}`` once it owns partitions and, at exit, ``{"result": {"records",
"cpu_s", "points"}}`` where ``points`` are (wall time, records copied) after each batch's acks.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ledgerflow.bench.procs import emit, own_cpu_seconds
from ledgerflow.config import load_settings

MAX_RECORDS = 1000
COMMIT_INTERVAL_S = 0.5


async def run(bootstrap: str, source: str, sink: str, group: str) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=10000,
        heartbeat_interval_ms=2000,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    await consumer.start()
    await producer.start()
    records, ready, last_commit = 0, False, time.monotonic()
    points: list[tuple[float, int]] = []  # (wall time a batch's acks arrived, records copied so far)
    first_fetch: float | None = None
    try:
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=100, max_records=MAX_RECORDS)
            if not ready and consumer.assignment():
                ready = True
                emit(ready=sorted(tp.partition for tp in consumer.assignment()))
            if got and first_fetch is None:
                first_fetch = time.time()
            futures = []
            for tp, batch_records in got.items():
                batch = producer.create_batch()
                for rec in batch_records:
                    if batch.append(key=rec.key, value=rec.value, timestamp=None) is None:
                        futures.append(await producer.send_batch(batch, sink, partition=tp.partition))
                        batch = producer.create_batch()
                        batch.append(key=rec.key, value=rec.value, timestamp=None)
                futures.append(await producer.send_batch(batch, sink, partition=tp.partition))
                records += len(batch_records)
            if futures:
                await asyncio.gather(*futures)
                points.append((time.time(), records))
            if got and time.monotonic() - last_commit >= COMMIT_INTERVAL_S:
                await consumer.commit()
                last_commit = time.monotonic()
        await consumer.commit()
    finally:
        await producer.stop()
        await consumer.stop()
    return {"records": records, "cpu_s": own_cpu_seconds(), "points": points, "first_fetch": first_fetch}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ledgerflow.bench.passthrough")
    p.add_argument("--source", required=True)
    p.add_argument("--sink", required=True)
    p.add_argument("--group", required=True)
    args = p.parse_args(argv)
    emit(result=asyncio.run(run(load_settings().kafka_bootstrap, args.source, args.sink, args.group)))


if __name__ == "__main__":
    main()
