"""`ledgerflow projections rebuild` says what it left out of the read models and why.

Probing with hostile logs: the rebuild skipped undecodable records, turns outside their
conversation's partition and forged decisions without a word — its JSON had only `records`
and `applied` — and the parallel rebuild did not even count the misrouted turns it skipped.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings, child_env
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.kafka.placement import placement
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS


def _turn(conv: str, turn_id: str) -> bytes:
    payload = MessageSubmitted(turn_id, "user", "hello", "slm-1", None)
    return codec.encode(
        new_event(
            "MessageSubmitted",
            tenant="acme",
            subject=conv,
            producer="gateway",
            payload=payload,
            occurred_at_micros=time.time_ns() // 1000,
        )
    )


async def _write(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    try:
        turns = settings.topic(CONVERSATION_EVENTS)
        count = len(await producer.partitions_for(turns))
        for i in range(20):  # good turns, each where its key belongs
            conv = f"conv-{i}"
            await producer.send_and_wait(turns, _turn(conv, "t1"), key=conv.encode())
        elsewhere = (placement(b"conv-x", count) + 1) % count
        await producer.send_and_wait(turns, _turn("conv-x", "t1"), key=b"conv-x", partition=elsewhere)
        await producer.send_and_wait(turns, b"garbage", key=b"conv-0")
        await producer.send_and_wait(settings.topic(POLICY_DECISIONS), b"\xc3\x01garbage", key=b"conv-0")
    finally:
        await producer.stop()


def test_the_rebuild_counts_what_it_left_out(settings: Settings) -> None:
    asyncio.run(_write(settings))
    time.sleep(0.5)
    for processes in ("1", "2"):  # in process and in parallel worker processes
        done = subprocess.run(
            [sys.executable, "-m", "ledgerflow.cli", "projections", "rebuild"],
            env=child_env(settings) | {"LEDGERFLOW_REBUILD_PROCESSES": processes},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["records"] == 23, result
        left_out = {k: result.get(k) for k in ("undecodable", "misrouted", "quarantined")}
        assert left_out == {"undecodable": 2, "misrouted": 1, "quarantined": 0}, (processes, result)
