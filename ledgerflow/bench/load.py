"""The load generator, run as its own process:

    python -m ledgerflow.bench.load burst --events N [--topic T]
    python -m ledgerflow.bench.load rate --events N --rate R [--topic T]
    python -m ledgerflow.bench.load turns --rate R --seconds S --conversations K [--topic T]

``burst`` publishes N realistic interleaved conversation events as fast as the producer
goes (the backlog a saturation trial drains); ``rate`` publishes them at R events/s (the
fixed-rate CPU trial); ``turns`` publishes user turns round-robin over K conversations at
R/s with ``occurred_at`` = the send time and a ``t`` header (µs since the epoch) for the
latency trials. The producer is configured like ``ledgerflow.traffic.Publisher``.
Prints one JSON line: ``{"result": {"sent", "messages", "seconds", "cpu_s"}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections import Counter
from typing import Any

from aiokafka import AIOKafkaProducer

from ledgerflow.bench.procs import emit, own_cpu_seconds
from ledgerflow.config import load_settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.topics import CONVERSATION_EVENTS
from ledgerflow.traffic import Mix, interleaved

TENANTS = ("acme", "globex", "initech")
LATENCY_TENANT = "acme"


def conversation_ids(run_id: str, count: int) -> list[str]:
    """The conversations the latency trial's subscribers follow."""
    return [f"{run_id}-c{i}" for i in range(count)]


def _producer(bootstrap: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)


async def _pace(began: float, sent: int, rate: float) -> None:
    if rate > 0:
        delay = began + sent / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)


async def conversations(
    topic: str, bootstrap: str, events: int, rate: float, seed: int, run_id: str
) -> dict[str, Any]:
    rng = random.Random(seed)
    stream = interleaved(
        rng,
        TENANTS,
        conversations=events,
        start_micros=time.time_ns() // 1000,
        open_at_once=64,
        run_id=run_id,
    )
    batch = [next(stream) for _ in range(events)]  # a conversation yields ≥ 4 events: enough
    encoded = [(e.subject.encode(), codec.encode(e)) for e in batch]
    types = Counter(e.type for e in batch)
    producer = _producer(bootstrap)
    await producer.start()
    try:
        cpu0, began = own_cpu_seconds(), time.monotonic()
        pending = []
        for n, (key, value) in enumerate(encoded):
            pending.append(await producer.send(topic, value, key=key))
            if rate > 0:
                await _pace(began, n + 1, rate)
            if len(pending) >= 5000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        seconds, cpu = time.monotonic() - began, own_cpu_seconds() - cpu0
    finally:
        await producer.stop()
    return {
        "sent": len(encoded),
        "messages": types.get("MessageSubmitted", 0),
        "types": dict(types),
        "seconds": seconds,
        "cpu_s": cpu,
    }


async def turns(
    topic: str, bootstrap: str, rate: float, seconds: float, count: int, run_id: str
) -> dict[str, Any]:
    rng = random.Random(count)
    ids = conversation_ids(run_id, count)
    mix = Mix()
    producer = _producer(bootstrap)
    await producer.start()
    sent = 0
    try:
        cpu0, began = own_cpu_seconds(), time.monotonic()
        while time.monotonic() - began < seconds:
            conv = ids[sent % count]
            now = time.time_ns() // 1000
            event = new_event(
                "MessageSubmitted",
                tenant=LATENCY_TENANT,
                subject=conv,
                producer="bench-load",
                occurred_at_micros=now,
                payload=MessageSubmitted(f"t{sent}", "user", mix.pick(rng), "slm-1", None),
            )
            await producer.send(
                topic, codec.encode(event), key=conv.encode(), headers=[("t", str(now).encode())]
            )
            sent += 1
            await _pace(began, sent, rate)
        await producer.flush()
        elapsed, cpu = time.monotonic() - began, own_cpu_seconds() - cpu0
    finally:
        await producer.stop()
    return {"sent": sent, "messages": sent, "seconds": elapsed, "cpu_s": cpu}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ledgerflow.bench.load")
    p.add_argument("mode", choices=["burst", "rate", "turns"])
    p.add_argument("--topic", help="default: the prefix's conversation.events")
    p.add_argument("--events", type=int, default=1000)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--conversations", type=int, default=1000)
    p.add_argument("--seed", type=int, default=8)
    p.add_argument("--run-id", default="bench")
    args = p.parse_args(argv)
    settings = load_settings()
    topic = args.topic or settings.topic(CONVERSATION_EVENTS)
    if args.mode == "turns":
        result = asyncio.run(
            turns(topic, settings.kafka_bootstrap, args.rate, args.seconds, args.conversations, args.run_id)
        )
    else:
        rate = args.rate if args.mode == "rate" else 0.0
        result = asyncio.run(
            conversations(topic, settings.kafka_bootstrap, args.events, rate, args.seed, args.run_id)
        )
    emit(result=result)


if __name__ == "__main__":
    main()
