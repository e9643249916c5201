"""What the SSE hub streams is what the agents take, on a real edge and broker: a record written
straight to Kafka that the policy agent dead-letters and the projector leaves out never reaches a
subscriber as a turn or a decision.

Before, the hub decoded any event type on either topic: a ``PolicyDecision`` (or any other
record type) written onto ``conversation.events``, a turn whose Kafka key is not its conversation,
and a turn outside its conversation's partition were streamed as data frames — a decision frame
the read models never hold, which a waiting ``POST /v1/conversation/step`` would also take as the
turn's decision.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from ledgerflow.api.hub import partition_for
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted, UsageWindow
from ledgerflow.sse_client import RawStream
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS
from tests.integration.test_sse_streams import PARTITIONS, decision_for, running_edge

TENANT, CONV, OTHER = "acme", "c-hostile-1", "c-hostile-2"
TIMEOUT_S = 30.0


def turn(conv: str, text: str) -> Event:
    return new_event(
        "MessageSubmitted",
        tenant=TENANT,
        subject=conv,
        producer="gateway",
        occurred_at_micros=time.time_ns() // 1000,
        payload=MessageSubmitted(turn_id=text, role="user", content=text, model="slm-1"),
    )


def usage_window(conv: str) -> Event:
    start = time.time_ns() // 1000 // 60_000_000 * 60_000_000
    payload = UsageWindow("slm-1", start, start + 60_000_000, 5, 1, 0, False, 0)
    return new_event(
        "UsageWindow",
        tenant=TENANT,
        subject=conv,
        producer="forger",
        occurred_at_micros=start,
        payload=payload,
    )


async def produce(settings: Settings, records: list[tuple[str, Event, bytes, int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for base, event, key, partition in records:
            await producer.send_and_wait(
                settings.topic(base), codec.encode(event), key=key, partition=partition
            )
    finally:
        await producer.stop()


def test_records_the_agents_refuse_are_not_streamed(settings: Settings, log_dir: Path, tokens) -> None:  # type: ignore[no-untyped-def]
    home, elsewhere = partition_for(CONV, PARTITIONS), partition_for(OTHER, PARTITIONS)
    assert home != elsewhere
    first, last = turn(CONV, "first"), turn(CONV, "last")
    hostile = [
        # a decision written onto the turns' topic (wrong-type-for-topic): also its own turn's decision
        (CONVERSATION_EVENTS, decision_for(first), CONV.encode(), home),
        # a record of another topic's type (wrong-type-for-topic)
        (CONVERSATION_EVENTS, usage_window(CONV), CONV.encode(), home),
        # a turn whose key is not its conversation (invalid-envelope)
        (CONVERSATION_EVENTS, turn(CONV, "wrong-key"), OTHER.encode(), home),
        # a turn of OTHER written into CONV's partition (misrouted)
        (CONVERSATION_EVENTS, turn(OTHER, "misrouted"), OTHER.encode(), home),
        # a turn on the decisions' topic (wrong-type-for-topic)
        (POLICY_DECISIONS, turn(CONV, "on-decisions"), CONV.encode(), home),
    ]
    records = [
        (CONVERSATION_EVENTS, first, CONV.encode(), home),
        *hostile,
        (CONVERSATION_EVENTS, last, CONV.encode(), home),
    ]
    token = tokens(TENANT, "subscriber")
    with running_edge(settings, log_dir) as edge:

        async def scenario() -> dict[str, list[str]]:
            paths = ("/v1/streams/tenant", f"/v1/conversation/stream?conversation_id={CONV}")
            streams = [await RawStream("127.0.0.1", edge.port, path, token).open() for path in paths]
            try:
                await produce(settings, records)
                got: dict[str, list[str]] = {}
                for path, stream in zip(paths, streams, strict=True):
                    seen = got[path] = []
                    deadline = time.monotonic() + TIMEOUT_S
                    async for frame in stream:
                        if frame.id is not None and frame.data:  # data frames only
                            seen.append(f"{frame.event} {frame.data[:300]}")
                            if last.event_id in frame.data:
                                break
                        assert time.monotonic() < deadline, f"{path}: {last.event_id} not streamed: {seen}"
                return got
            finally:
                for stream in streams:
                    stream.close()

        frames = asyncio.run(scenario())
    for path, seen in frames.items():
        wanted = [f"MessageSubmitted {first.event_id}", f"MessageSubmitted {last.event_id}"]
        assert [" ".join(f.split()[:1]) + " " + _event_id(f) for f in seen] == wanted, (path, seen)


def _event_id(frame: str) -> str:
    return frame.split('"event_id":"', 1)[1].split('"', 1)[0] if '"event_id":"' in frame else frame
