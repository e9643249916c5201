"""A turn its producer put in a partition its key does not belong in (a producer with another
partitioner, written straight to Kafka) while the topic keeps its partition count: that one turn
is dead-lettered with reason ``misrouted`` and kept out of the read models, and everything else
keeps flowing — the turns before and after it in the same partition are decided and projected,
the worker keeps running, and the audit (read models equal to a rebuild) is clean.

Partitions added to a live topic are the other cause of a misplaced turn, and there the worker
still refuses (tests/integration/test_partitions_added.py): it tells the two apart by asking the
brokers for the topic's partition count when it meets one.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from ledgerflow.audit.cli import audit_cli
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.dlq import read_dead_letters
from ledgerflow.dlq.replay import Filters, Step, replay
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.logs import read_all
from ledgerflow.kafka.placement import placement
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS
from tests.integration.edgekit import bearer
from tests.integration.test_dead_letters import TENANT, _turn
from tests.integration.test_partitions_added import BEFORE, NO_METRICS
from tests.support.processes import Process, running_edge, start

SETTLE_S = 120.0


def _conversation_in(partition: int, prefix: str) -> str:
    return next(c for n in range(10_000) if placement((c := f"{prefix}-{n}").encode(), BEFORE) == partition)


async def _produce(settings: Settings, placed: list[tuple[int, str, bytes]]) -> list[tuple[int, int]]:
    """Each (partition, key, value) produced to exactly that partition; where each landed."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        where = []
        for partition, key, value in placed:
            meta = await producer.send_and_wait(
                settings.topic(CONVERSATION_EVENTS), value, key=key.encode(), partition=partition
            )
            where.append((meta.partition, meta.offset))
        return where
    finally:
        await producer.stop()


def test_a_misrouted_turn_is_dead_lettered_and_its_partition_keeps_flowing(
    stack: Settings, tmp_path: Path
) -> None:
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings, partitions=BEFORE))
    home = _conversation_in(1, "home")  # decided in partition 1, where it belongs
    stray = _conversation_in(0, "stray")  # belongs in 0; one of its turns is put in 1
    good = [_turn(home, "t1"), _turn(stray, "t1"), _turn(home, "t2")]
    misrouted = _turn(stray, "t2")
    plan = [
        (1, home, codec.encode(good[0])),
        (0, stray, codec.encode(good[1])),
        (1, stray, codec.encode(misrouted)),  # where a producer with another partitioner puts it
        (1, home, codec.encode(good[2])),
    ]
    where = asyncio.run(_produce(settings, plan))
    worker = start(settings, "worker", "worker", log_dir=tmp_path / "logs", extra_env=NO_METRICS)
    try:
        _wait_for(
            lambda: (
                len(_decided(settings)) >= len(good)
                and bool(asyncio.run(read_dead_letters(settings, CONVERSATION_EVENTS)))
            ),
            worker,
            "decision of each well-placed turn and dead letter of the misrouted one",
        )
        assert sorted(_decided(settings)) == sorted(e.event_id for e in good), (
            "each well-placed turn decided once"
        )
        located = asyncio.run(read_dead_letters(settings, CONVERSATION_EVENTS))
        assert len(located) == 1 and located[0].letter is not None, located
        letter = located[0].letter
        assert (letter.partition, letter.offset) == where[2]
        assert letter.reason_code == "misrouted", letter.reason
        assert f"belongs in partition 0 of {BEFORE}, not 1" in letter.reason, letter.reason
        assert letter.value == plan[2][2] and letter.key == stray.encode()
        # The read models hold the well-placed turns only: the stray conversation has its one turn.
        assert _turn_counts(settings, tmp_path, [home, stray]) == {home: 2, stray: 1}
        # `ledgerflow dlq replay` puts the turn where its key belongs (back where it was, it would
        # be refused again); it is decided and projected there, and a second replay finds it.
        steps = asyncio.run(_replay_misrouted(settings))
        assert [(s.action, s.replayed_at and s.replayed_at[0]) for s in steps] == [("replay", 0)], steps
        _wait_for(lambda: len(_decided(settings)) == len(good) + 1, worker, "decision of the replayed turn")
        assert sorted(_decided(settings)) == sorted(e.event_id for e in [*good, misrouted])
        _wait_for(
            lambda: _turn_counts(settings, tmp_path, [stray]) == {stray: 2},
            worker,
            "projection of the replay",
        )
        again = asyncio.run(_replay_misrouted(settings))
        assert [s.action for s in again] == ["skip"] and "already replayed as" in again[0].why, again
        assert worker.popen.poll() is None, worker.log_tail()
    finally:
        worker.stop()
    out = tmp_path / "audit.json"
    code = audit_cli(settings, json_out=str(out), skip_projections=False, quiet=True)
    report = json.loads(out.read_text())
    assert code == 0, json.dumps(report["findings"][:5], indent=2)
    assert report["stats"]["turns dead-lettered"] == 1, report["stats"]


async def _replay_misrouted(settings: Settings) -> list[Step]:
    return await replay(
        settings, CONVERSATION_EVENTS, Filters(reason="misrouted"), dry_run=False, force=False
    )


def _decided(settings: Settings) -> list[str]:
    """The input event id of every decision on the log."""
    records = asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS)))
    return [codec.decode(r.value).payload.input_event_id for r in records]


def _turn_counts(settings: Settings, tmp_path: Path, conversations: list[str]) -> dict[str, object]:
    """Each conversation's ``turn_count`` as the edge reads it from the read models."""
    headers = bearer(settings, tenant=TENANT)
    with running_edge(settings, tmp_path / "logs") as (_, edge), httpx.Client(timeout=15) as client:
        return {
            c: client.get(f"{edge}/v1/conversations/{c}", headers=headers).json().get("turn_count")
            for c in conversations
        }


def _wait_for(done: Callable[[], bool], worker: Process, what: str) -> None:
    deadline = time.monotonic() + SETTLE_S
    while not done():
        assert worker.popen.poll() is None, (
            f"the worker exited {worker.popen.returncode}:\n{worker.log_tail()}"
        )
        assert time.monotonic() < deadline, f"no {what} within {SETTLE_S:.0f} s"
        time.sleep(1.0)
