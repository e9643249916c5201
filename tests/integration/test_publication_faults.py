"""``PUT /v1/policy/rules`` under dependency faults, on a PRIVATE Kafka and Redis (the shared
stack is never paused): a paused broker or a paused Redis is a 503 problem+json with
``Retry-After`` within the edge's per-call deadline (``api/faults.DEADLINE_S``), the tenant's
publication lock is let go, and once the dependency is back the next publication succeeds at
once with the next version: nothing was published by the refused one.

Found by a fault probe: with the broker paused (SIGSTOP) the publication was answered only
after about 15 s (reading the tenant's latest version from ``policy.rules`` had no deadline;
paused in the middle of that read, it waited for as long as the broker stayed paused). With Redis
paused, the lock's ``SET NX`` timed out (503) but Redis applied it when it woke: a lock without a
holder made the tenant's next publications 409 for its 60 s lifetime. ``POST /v1/audit``'s lock
did the same for 80 s (``api/redis_lock.py`` settles both).
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from ledgerflow.api.faults import DEADLINE_S
from tests.integration import edgekit
from tests.integration.privateedge import CLIENT_TIMEOUT_S, World, world  # noqa: F401

ANSWER_WITHIN_S = DEADLINE_S + 3.0  # the bound plus a loaded CI host's slack


@pytest.mark.parametrize("which", ["kafka", "redis"])
def test_a_publication_during_a_paused_dependency_is_503_within_the_deadline(
    world: World,  # noqa: F811
    which: str,
) -> None:
    first, _ = world.put()
    assert first.status_code == 201, first.text
    pid = world.pid(which)
    os.kill(pid, signal.SIGSTOP)
    try:
        refused, took = world.put()
    finally:
        os.kill(pid, signal.SIGCONT)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert int(refused.headers["retry-after"]) > 0
    assert took < ANSWER_WITHIN_S, f"{which} paused: answered after {took:.1f} s (bound {DEADLINE_S:g} s)"
    # The dependency is back: the lock was let go and nothing was published by the refusal.
    deadline = time.monotonic() + 60
    while (after := world.put()[0]).status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert after.status_code == 201, after.text
    assert after.json()["version"] == first.json()["version"] + 1
    assert "Traceback" not in world.edge.log_tail(400)


def test_an_audit_refused_while_redis_was_paused_leaves_no_lock_behind(world: World) -> None:  # noqa: F811
    admin = edgekit.bearer(world.settings, roles="admin")
    pid = world.pid("redis")
    os.kill(pid, signal.SIGSTOP)
    try:
        refused = httpx.post(f"{world.base}/v1/audit", headers=admin, timeout=CLIENT_TIMEOUT_S)
    finally:
        os.kill(pid, signal.SIGCONT)
    assert refused.status_code == 503, refused.text
    assert int(refused.headers["retry-after"]) > 0
    after = httpx.post(f"{world.base}/v1/audit", headers=admin, timeout=120)
    assert after.status_code == 200, after.text  # was 409 "already running" for 80 s
