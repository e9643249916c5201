"""A training command whose publish timed out (503) under a paused broker, retried under its
``Idempotency-Key``, on a PRIVATE Kafka and Redis (the shared stack is never paused).

Found by a fault probe: the broker was paused (SIGSTOP) while the edge published an
``EnableTraining``; the edge answered 503 after its 5 s deadline, but the broker applied the record
when it woke and the training agent accepted it. The client's retry was a second command with a
new command id: 409 ``already_enabled``, so the client was told twice that what it asked for had
not happened, while it had. With a key, the retry is the same command (its id derived from the key
and the request): answered once by the agent, and the retry gets that outcome, 200.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx

from ledgerflow.contracts import codec
from ledgerflow.kafka.logs import read_all
from ledgerflow.topics import TRAINING_AUDIT
from tests.integration import edgekit
from tests.integration.privateedge import World, world  # noqa: F401
from tests.support.processes import start

ENABLE = {"reason": "label support chats", "ttl_seconds": 600}


def _outcomes(w: World) -> list[str]:
    raws = asyncio.run(read_all(w.settings, w.settings.topic(TRAINING_AUDIT)))
    return [codec.decode(r.value or b"").type for r in raws]


def test_a_keyed_enable_retried_after_a_503_that_was_applied_is_answered_once(
    world: World,  # noqa: F811
    tmp_path: Path,
) -> None:
    worker = start(world.settings, "worker", "worker", log_dir=tmp_path / "worker-logs")
    admin = edgekit.bearer(world.settings, roles="admin")
    url = f"{world.base}/v1/training"
    try:
        deadline = time.monotonic() + 90  # the worker answers: a disable of a disabled tenant is a 409
        while (
            warm := httpx.post(f"{url}/disable", json={"reason": "warm"}, headers=admin, timeout=30)
        ).status_code != 409:
            assert time.monotonic() < deadline, (warm.text, worker.log_tail())
            time.sleep(1)
        keyed = admin | {"Idempotency-Key": "enable-1"}
        pid = world.pid("kafka")
        os.kill(pid, signal.SIGSTOP)
        try:
            refused = httpx.post(f"{url}/enable", json=ENABLE, headers=keyed, timeout=30)
        finally:
            os.kill(pid, signal.SIGCONT)
        assert refused.status_code == 503, refused.text
        deadline = time.monotonic() + 60
        while (
            retry := httpx.post(f"{url}/enable", json=ENABLE, headers=keyed, params={"wait": 10}, timeout=30)
        ).status_code == 503:
            assert time.monotonic() < deadline, retry.text
            time.sleep(1)
        assert retry.status_code == 200, retry.text  # was 409 already_enabled: a second command
        assert (retry.json()["outcome"], retry.json()["version"]) == ("TrainingEnabled", 1)
        again = httpx.post(f"{url}/enable", json=ENABLE, headers=keyed, timeout=30)
        assert again.status_code == 200 and again.json() == retry.json(), again.text
        other = httpx.post(f"{url}/enable", json=ENABLE, headers=admin, params={"wait": 10}, timeout=30)
        assert other.status_code == 409, other.text  # without the key: a new command, rejected
    finally:
        worker.stop()
    assert _outcomes(world).count("TrainingEnabled") == 1
