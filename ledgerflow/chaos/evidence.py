"""What the run's log and read models hold once the load has stopped: read for the checks, and
polled until the pipeline has caught up (every turn decided, the read models applied)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis
from aiokafka import TopicPartition

from ledgerflow.chaos.checks import Logged
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.errors import LedgerflowError
from ledgerflow.kafka.logs import count_records, read_all, unapplied
from ledgerflow.kafka.reader import Horizon, LogReader
from ledgerflow.projections.guards import guard_sampled_blocking
from ledgerflow.projections.keys import DEFAULT_GENERATION, Keys, active_pointer
from ledgerflow.redisclient import sync_client
from ledgerflow.redisvalues import int_map, text
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, TRAINING_COMMANDS


@dataclass(frozen=True, slots=True)
class Evidence:
    events: list[Logged]
    decisions: list[Logged]
    commands: list[Logged]

    @property
    def turns(self) -> int:
        return len({e.key for e in self.events if e.type == "MessageSubmitted"})


async def _read(settings: Settings, base: str) -> list[Logged]:
    found = []
    for raw in await read_all(settings, settings.topic(base)):
        if raw.value is None:
            continue
        try:
            event = codec.decode(raw.value)
        except LedgerflowError:
            continue  # not ours to check: the audit names undecodable records
        payload = event.payload
        key = (
            str(getattr(payload, "command_id", None) or event.event_id)
            if base == TRAINING_COMMANDS
            else event.event_id
        )
        decides = getattr(payload, "input_event_id", None)
        found.append(Logged(key, event.type, event.tenant, event.subject, raw.partition, raw.offset, decides))
    return found


def read_evidence(settings: Settings) -> Evidence:
    async def everything() -> tuple[list[Logged], ...]:
        return tuple(
            await asyncio.gather(
                *(_read(settings, b) for b in (CONVERSATION_EVENTS, POLICY_DECISIONS, TRAINING_COMMANDS))
            )
        )

    events, decisions, commands = asyncio.run(everything())
    return Evidence(events, decisions, commands)


def live_keys(client: redis.Redis, settings: Settings) -> Keys:
    """The read models' live generation (the active pointer; absent = the default)."""
    generation = client.get(active_pointer(settings.topic_prefix))
    return Keys.for_prefix(settings.topic_prefix, text(generation) if generation else DEFAULT_GENERATION)


async def read_models_behind(settings: Settings, bases: Iterable[str]) -> tuple[bool, list[str], Horizon]:
    """Whether the live read-model space is complete, the partitions of ``bases`` (topic base
    names) whose records it has not all applied (``topic:partition``), and the log ends read."""
    topics = [settings.topic(b) for b in bases]
    async with LogReader(settings) as reader:
        horizon = await reader.horizon(topics)
    client = sync_client(settings.redis_url, socket_timeout=10)
    try:
        keys = live_keys(client, settings)
        checkpoint = int_map(client.hgetall(keys.checkpoint("read-models")))
        complete = guard_sampled_blocking(client, keys.sentinel())  # per-slot copies on a cluster
    finally:
        client.close()
    ends = {
        TopicPartition(t, p): end
        for t, partition_ends in horizon.items()
        for p, end in enumerate(partition_ends)
    }
    behind = await unapplied(settings, checkpoint, ends)
    return complete, behind, horizon


def read_model_turns(
    settings: Settings, conversations: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], int]:
    """Each conversation's ``turns`` in the live read models."""
    wanted = sorted(set(conversations))
    client = sync_client(settings.redis_url, socket_timeout=30)
    try:
        keys = live_keys(client, settings)
        pipe = client.pipeline(transaction=False)
        for tenant, conversation in wanted:
            pipe.hget(keys.conversation(tenant, conversation), "turns")
        return {c: int(v or 0) for c, v in zip(wanted, pipe.execute(), strict=True)}
    finally:
        client.close()


def caught_up(settings: Settings, turns: int) -> tuple[bool, str]:
    """Whether the decisions topic holds at least ``turns`` records and the read models applied
    every record of both topics (their checkpoint at each partition's end, the space complete)."""
    complete, behind, horizon = asyncio.run(
        read_models_behind(settings, (POLICY_DECISIONS, CONVERSATION_EVENTS))
    )
    decisions = sum(horizon[settings.topic(POLICY_DECISIONS)])  # offsets: records and transaction markers
    if decisions >= turns:
        decisions = asyncio.run(count_records(settings, settings.topic(POLICY_DECISIONS)))
    state = (
        f"{decisions} decisions of {turns} turns; read models complete={complete}, "
        f"behind on {len(behind)} partitions"
    )
    return decisions >= turns and complete and not behind, state


def settle(settings: Settings, turns: int, timeout: float, say: Callable[[str], None]) -> bool:
    """Poll ``caught_up`` until true or ``timeout``; whether it was reached."""
    deadline = time.monotonic() + timeout
    last = 0.0
    while True:
        try:
            done, state = caught_up(settings, turns)
        except (LedgerflowError, redis.RedisError, OSError) as exc:
            done, state = False, f"not readable yet: {exc}"
        if done:
            say(f"chaos: caught up: {state}")
            return True
        if time.monotonic() > deadline:
            say(f"chaos: not caught up after {timeout:.0f} s: {state}")
            return False
        if time.monotonic() - last > 15:
            last = time.monotonic()
            say(f"chaos: waiting for the pipeline: {state}")
        time.sleep(2.0)
