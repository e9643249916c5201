"""The chaos suite at CI size: every fault kind once (at least), at seeded random points, while a
steady load of turns, steps and training commands flows through two edges and straight to Kafka
on a private three-broker cluster with two workers, and SSE subscribers follow conversations
across edge kills. Nothing acknowledged may be lost or doubled (the run's checks: docs/reliability.md,
"Chaos"). ``LEDGERFLOW_CHAOS_SEED`` replays another plan; ``ledgerflow chaos`` runs longer.

With ``LEDGERFLOW_TEST_REDIS=cluster`` (``make test-redis-cluster``) the run has a Redis Cluster
(three masters, a replica each) instead of one Redis, and its Redis kinds are a master killed and
its replica promoted (``redis-failover``) and a master paused, instead of one Redis killed.

The run starts its own brokers, Redis (or Redis Cluster), workers and edges on free ports in ``tmp_path``; the
shared stack is never touched.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from ledgerflow.chaos.faults import kinds_for
from ledgerflow.chaos.report import lines
from ledgerflow.chaos.run import ChaosConfig, run
from tests.support.redismode import redis_mode

SEED = int(os.environ.get("LEDGERFLOW_CHAOS_SEED", "20261130"))


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@pytest.mark.timeout(600)
def test_every_fault_kind_under_load_loses_and_doubles_nothing(tmp_path: Path) -> None:
    config = ChaosConfig(
        duration_s=30,  # the plan runs past it until every kind has struck once
        seed=SEED,
        rate=60,
        subscribers=4,
        gap_s=(3.0, 6.0),
        drivers=(8, 4, 4),
        settle_s=240,
        state_dir=tmp_path / "chaos",
        redis_cluster=redis_mode() == "cluster",
    )
    report = run(config, _say)
    text = "\n".join(lines(report))
    print(f"\n{text}")
    assert report.redis == redis_mode(), text
    assert set(report.faults_by_kind()) == set(kinds_for(config.redis_cluster)), text
    [edge_kill] = [f for f in report.faults if f.kind == "edge-kill"][:1]
    served = re.search(r"(\d+) SSE subscribers", edge_kill.target)
    assert served is not None and int(served.group(1)) > 0, (
        f"the killed edge served no subscriber: {edge_kill}"
    )
    for path in ("edge-events", "kafka-events", "step", "training-edge", "training-kafka"):
        assert report.tally.acknowledged[path] > 0, f"nothing acknowledged on {path}: {text}"
    assert report.resumes > 0, f"no subscriber resumed with its cursor: {text}"
    assert report.turns_on_log > 1000 and report.decisions == report.turns_on_log, text
    assert report.audit_exit == 0, text
    assert report.discrepancies == [], text
