"""A training outcome for a tenant written into a partition of ``training.audit`` that is not the
tenant's home, as the start of a chain there and hashed right, is not folded by the training
agent's recovery, on the real broker and real workers (``agents/commanded.py``, Step 1).

The chain has no secret: anyone who can write to Kafka can start a chain in another partition.
The agent answers a tenant's commands only in its home partition (its tenant key placed under the
partition count the worker group pinned) and every reader takes its outcomes only from there.
Recovery folded every outcome that linked in the partition it read, so a copy of the tenant's
enable, already due, made the restarted agent write a ``TrainingExpired`` for the tenant into the
foreign partition, one every reader refuses as misplaced. Now the record is skipped and named in
the worker's log, and the tenant's genuine lock at home is untouched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from pathlib import Path

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import EnableTraining, TrainingEnabled
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.logs import RawRecord
from ledgerflow.topics import TRAINING_AUDIT
from tests.integration.test_forged_outcomes import TENANT, _commands, _outcomes, _send, _wait
from tests.integration.test_forged_outcomes import _command as command_of
from tests.support.processes import start

AGENTS = ("--agents", "training")
SETTLE_S = 4.0  # several of the agent's 1 s ticks after the forged lock was due


def _restarted_and_settled(settings: Settings, log_dir: Path, forged_at: tuple[int, int]) -> str:
    """A new worker recovers every partition (its first tick), its ticks run a while after the
    record at ``forged_at`` was recovered (or acted on), and it stops. Its log."""
    worker = start(settings, "worker-2", "worker", *AGENTS, log_dir=log_dir)
    partition, offset = forged_at
    where = f"{settings.topic(TRAINING_AUDIT)}[{partition}]@{offset} is not the agent's own"
    try:
        deadline = time.monotonic() + 90.0
        while time.monotonic() < deadline:
            assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
            log = worker.log.read_text(errors="replace")
            expired = [e for r, e in _outcomes(settings, TRAINING_AUDIT) if r.partition == partition]
            if where in log or any(e.type == "TrainingExpired" for e in expired):
                break
            time.sleep(0.5)
        time.sleep(SETTLE_S)
    finally:
        assert worker.stop() == 0, worker.log_tail()
    return worker.log.read_text(errors="replace")


def test_a_linked_outcome_in_a_partition_not_its_tenants_is_not_recovered_and_never_expires(
    settings: Settings, log_dir: Path
) -> None:
    first = start(settings, "worker-1", "worker", *AGENTS, log_dir=log_dir)
    try:
        _commands(settings, command_of(EnableTraining("mo-t1", "root", "fine-tune", 3600, None)))
        found = _wait(settings, {TRAINING_AUDIT: {"mo-t1"}}, first)
    finally:
        assert first.stop() == 0, first.log_tail()
    [(home_raw, genuine)] = found[TRAINING_AUDIT]
    assert isinstance(genuine.payload, TrainingEnabled)

    topic = settings.topic(TRAINING_AUDIT)
    count = asyncio.run(partition_counts(settings, [topic]))[topic]
    home, elsewhere = home_raw.partition, (home_raw.partition + 1) % count
    due = dataclasses.replace(genuine.payload, expires_at=time.time_ns() // 1000)  # due at once
    copy: Event = dataclasses.replace(genuine, event_id=str(uuid.uuid4()), payload=due)
    forged = link_event(copy, None)  # the first link of the tenant's chain in that partition
    asyncio.run(_send(settings, [(TRAINING_AUDIT, codec.encode(forged), elsewhere, [])]))
    [forged_raw] = [r for r, _ in _outcomes(settings, TRAINING_AUDIT) if r.partition == elsewhere]

    log = _restarted_and_settled(settings, log_dir, (elsewhere, forged_raw.offset))

    after: list[tuple[RawRecord, Event]] = _outcomes(settings, TRAINING_AUDIT)
    there = [e.type for r, e in after if r.partition == elsewhere]
    assert there == ["TrainingEnabled"], f"the agent acted on the misplaced record: {there}"
    at_home = [(e.type, e.event_id) for r, e in after if r.partition == home]
    assert at_home == [("TrainingEnabled", genuine.event_id)], "the genuine lock (1 h) stays as it was"
    where = f"{topic}[{elsewhere}]@{forged_raw.offset} is not the agent's own"
    assert where in log, f"no warning naming {where}"
    assert f"tenant {TENANT!r} belongs in partition {home} of {count}, not {elsewhere}" in log
