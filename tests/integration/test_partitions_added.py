"""Partitions added to live topics under load (``kafka-topics --alter --partitions``): the worker
refuses in one line and exits 1, and nothing is lost, doubled or chained wrongly.

Three partitions per topic, then five: murmur2 modulo 5 moves most conversations to another
partition, old ones included (not only into the new partitions, as a doubling would). Turns keep
arriving while the topics are altered: a running producer still uses the old layout for a while
(its metadata is cached), a new one uses the new layout at once.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewPartitions

from ledgerflow.agents.layout import PROCEDURE
from ledgerflow.audit.cli import audit_cli
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.logs import read_all
from ledgerflow.kafka.placement import placement
from ledgerflow.metrics import WORKER_METRICS_ENV
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, TOPICS
from ledgerflow.traffic import publish
from tests.integration.test_crash import Feed, _events, _wait_settled
from tests.support.processes import Process, start

BEFORE, AFTER = 3, 5
NO_METRICS = {WORKER_METRICS_ENV: "off"}


async def _alter(settings: Settings, partitions: int) -> None:
    """What an operator's ``kafka-topics --alter --partitions`` does, to every multi-partition topic."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        wanted = {settings.topic(t.base): NewPartitions(partitions) for t in TOPICS if t.partitions > 1}
        await admin.create_partitions(wanted)
    finally:
        await admin.close()


def _worker(settings: Settings, tmp_path: Path) -> Process:
    return start(settings, "worker", "worker", log_dir=tmp_path / "logs", extra_env=NO_METRICS)


def _audit(settings: Settings, out: Path) -> dict:
    """The audit finds nothing wrong; its only notes are the turns no decision answers yet."""
    code = audit_cli(settings, json_out=str(out), skip_projections=False, quiet=True)
    report = json.loads(out.read_text())
    assert code == 0, json.dumps(report["findings"][:5], indent=2)
    assert all("no decision yet" in note for note in report["notes"]), report["notes"]
    return report


def _refused(proc: Process) -> str:
    """The one refusal line of a worker that exited 1 (an operational refusal)."""
    code = proc.popen.wait(90)
    assert code == 1, f"exit {code}\n{proc.log_tail()}"
    lines = [x for x in proc.log.read_text(errors="replace").splitlines() if PROCEDURE in x]
    assert len(lines) == 1, proc.log_tail()
    assert "partitions were added to a live topic" in lines[0], lines[0]
    return lines[0]


@pytest.mark.timeout(420)
def test_partitions_added_under_load_are_refused_and_nothing_is_lost_doubled_or_forked(
    stack: Settings, tmp_path: Path
) -> None:
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings, partitions=BEFORE))
    events, _ = _events(41, 2_400)
    first, running, fresh = events[:1_000], events[1_000:1_600], events[1_600:]
    turns_first = sum(e.type == "MessageSubmitted" for e in first)
    asyncio.run(publish(settings, iter(first), progress_every_s=0))
    worker = _worker(settings, tmp_path)
    try:
        _wait_settled(settings, turns_first, [worker], timeout=120)
        feed = Feed(settings, running, rate=300)  # under load while the topics change
        asyncio.run(_alter(settings, AFTER))
        feed.join()
        asyncio.run(publish(settings, iter(fresh), progress_every_s=0))  # a producer that sees five
        line = _refused(worker)
    finally:
        worker.stop()
    # Nothing lost: every turn is on the log; some sit in partitions their conversation was not in.
    inputs = asyncio.run(read_all(settings, settings.topic(CONVERSATION_EVENTS)))
    assert Counter(codec.decode(r.value).event_id for r in inputs) == Counter(e.event_id for e in events)
    moved = [r for r in inputs if r.key is not None and placement(r.key, BEFORE) != r.partition]
    assert moved, "no turn was placed by the new layout: the test did not move any conversation"
    # Nothing doubled, nothing forked: one decision per decided turn, chains intact (the audit).
    decided = Counter(
        codec.decode(r.value).payload.input_event_id
        for r in asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS)))
    )
    assert decided and max(decided.values()) == 1, decided.most_common(3)
    moved_ids = {codec.decode(r.value).event_id for r in moved}
    assert not moved_ids & set(decided), "a turn placed by the new layout was decided"
    report = _audit(settings, tmp_path / "audit.json")
    assert report["stats"]["decisions re-derived"] == sum(decided.values())
    # A restart (the supervisor's, an operator's) refuses too: the group's commits pinned three.
    again = _worker(settings, tmp_path)
    try:
        assert f"has {AFTER} partitions" in _refused(again)
    finally:
        again.stop()
    print(f"\nrefused: {line}\n{len(moved)} turns placed by the new layout, {sum(decided.values())} decided")
