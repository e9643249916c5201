"""Latency probes, each run as its own process:

    python -m ledgerflow.bench.sse_clients sse --port P --token JWT --run-id R --first A --count N --out F
    python -m ledgerflow.bench.sse_clients kafka --topic T --partitions P --out F

``sse`` opens N conversation streams (``/v1/conversation/stream``) on bare sockets
(``ledgerflow.sse_client.RawStream``), one per conversation ``R-cA`` … and, for every
data frame, parses its JSON and records ``now − occurred_at`` (the load generator sets
``occurred_at`` to the send time; a decision carries its input's ``occurred_at``).
``kafka`` is the raw baseline: a plain aiokafka consumer (no group) of ``T`` from its
end, recording ``now − header t``. Both print ``{"ready": …}`` once every stream is open
(or every partition positioned), and on SIGTERM write their samples
``[[kind, sent_us, latency_us], …]`` to ``F`` and print ``{"result": …}``.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from ledgerflow.bench.load import conversation_ids
from ledgerflow.bench.procs import emit, own_cpu_seconds
from ledgerflow.config import load_settings
from ledgerflow.sse_client import RawStream

CONNECT_AT_ONCE = 50
_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")

Sample = tuple[str, int, int]


def _micros(text: str) -> int:
    delta = datetime.fromisoformat(text) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


async def _follow(stream: RawStream, samples: list[Sample], errors: list[str], control: Counter[str]) -> None:
    try:
        async for frame in stream:
            if frame.id is None:
                control[frame.event] += 1  # control frames (heartbeat …) carry no id and no record
                continue
            sent = _micros(orjson.loads(frame.data)["occurred_at"])
            samples.append((frame.event, sent, time.time_ns() // 1000 - sent))
        control["stream ended"] += 1
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        errors.append(repr(exc))
    finally:
        stream.close()


async def sse(
    port: int,
    token: str,
    run_id: str,
    first: int,
    count: int,
    stop: asyncio.Event,
    samples: list[Sample],
    errors: list[str],
    control: Counter[str],
) -> None:
    ids = conversation_ids(run_id, first + count)[first:]
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)

    async def open_one(conv: str) -> RawStream:
        async with gate:
            return await RawStream(
                "127.0.0.1", port, f"/v1/conversation/stream?conversation_id={conv}", token
            ).open()

    streams = await asyncio.gather(*(open_one(c) for c in ids))
    tasks = [asyncio.create_task(_follow(s, samples, errors, control)) for s in streams]
    emit(ready=len(streams))
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def kafka(
    bootstrap: str, topic: str, partitions: int, stop: asyncio.Event, samples: list[Sample]
) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)
        emit(ready=len(tps))
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=100)
            for records in got.values():
                for rec in records:
                    sent_text = dict(rec.headers or ()).get("t")
                    if sent_text:
                        sent = int(sent_text)
                        samples.append(("raw", sent, time.time_ns() // 1000 - sent))
    finally:
        await consumer.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    samples: list[Sample] = []
    errors: list[str] = []
    control: Counter[str] = Counter()
    if args.mode == "sse":
        await sse(args.port, args.token, args.run_id, args.first, args.count, stop, samples, errors, control)
    else:
        await kafka(load_settings().kafka_bootstrap, args.topic, args.partitions, stop, samples)
    args.out.write_bytes(orjson.dumps(samples))
    return {
        "samples": len(samples),
        "errors": errors[:5],
        "error_count": len(errors),
        "control": dict(control),
        "cpu_s": own_cpu_seconds(),
        "out": str(args.out),
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ledgerflow.bench.sse_clients")
    p.add_argument("mode", choices=["sse", "kafka"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--token", default="")
    p.add_argument("--run-id", default="bench")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--topic", default="")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    emit(result=asyncio.run(run(args)))


if __name__ == "__main__":
    main()
