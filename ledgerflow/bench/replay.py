"""Projection rebuild against the raw consume of the same topics, each in its own process:

    python -m ledgerflow.bench.replay rebuild --namespace NS
    python -m ledgerflow.bench.replay parallel --namespace NS
    python -m ledgerflow.bench.replay raw

Both read ``conversation.events`` and ``policy.decisions`` of the prefix in
``LEDGERFLOW_TOPIC_PREFIX`` from offset 0 to the end offsets taken before the clock
starts, with the same consumer settings as ``ledgerflow.projections.rebuild.replay``
(8 MiB per partition, 64 MiB per fetch, batches of ``rebuild.BATCH``). ``rebuild`` is
what ``ledgerflow projections rebuild`` does into the fresh key space ``NS`` (decode,
``project``, batches folded in memory) in one process, ``parallel`` the same with
``LEDGERFLOW_REBUILD_PROCESSES`` worker processes (default: one per core); ``raw`` only
fetches. The clock covers consumer start-up to the last record.
Prints ``{"result": {"records", "seconds", "rate", "cpu_s", "round_trips"}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiokafka import TopicPartition

from ledgerflow import gcpolicy
from ledgerflow.bench.procs import emit, own_cpu_seconds
from ledgerflow.config import Settings, load_settings
from ledgerflow.projections import rebuild
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.parallel import processes_from_env, replay_parallel
from ledgerflow.redisclient import async_client


async def raw_consume(settings: Settings, until: dict[TopicPartition, int]) -> int:
    consumer = rebuild.replay_consumer(settings)
    await consumer.start()
    records = 0
    try:
        tps = [tp for tp, end in until.items() if end > 0]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        remaining = set(tps)
        while remaining:
            got = await consumer.getmany(*remaining, timeout_ms=1000, max_records=rebuild.BATCH)
            for tp, recs in got.items():
                end = until[tp]
                records += sum(1 for r in recs if r.offset < end)
            for tp in list(remaining):
                if await consumer.position(tp) >= until[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return records


async def run(settings: Settings, mode: str, namespace: str) -> dict[str, Any]:
    until = await rebuild.end_offsets(settings)
    emit(started=True)
    cpu0, began = own_cpu_seconds(), time.perf_counter()
    round_trips = 0
    if mode == "raw":
        records = await raw_consume(settings, until)
    else:
        redis = async_client(settings.redis_url, socket_timeout=30)
        try:
            workers = 1 if mode == "rebuild" else processes_from_env()
            stats = await replay_parallel(settings, redis, Keys(namespace), until, processes=workers)
        finally:
            await redis.aclose()
        records, round_trips = stats.records, stats.round_trips
    seconds = time.perf_counter() - began
    return {
        "records": records,
        "seconds": seconds,
        "rate": records / seconds if seconds else 0.0,
        "cpu_s": own_cpu_seconds() - cpu0,
        "round_trips": round_trips,
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ledgerflow.bench.replay")
    p.add_argument("mode", choices=["raw", "rebuild", "parallel"])
    p.add_argument("--namespace", default="lf:bench-rebuild:")
    args = p.parse_args(argv)
    gcpolicy.tune()  # as `ledgerflow rebuild` (ledgerflow/cli.py); the raw read too, for a fair pair
    emit(result=asyncio.run(run(load_settings(), args.mode, args.namespace)))


if __name__ == "__main__":
    main()
