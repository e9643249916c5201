"""Records written straight to ``training.audit`` do not change ``GET /v1/training/status``, and a
rebuild of the read models shows the same status, on the real broker, a real worker and a real edge.

Training is enabled by the admin through the edge; then a copy of the real outcome, an unchained
``TrainingDisabled``, one linked to the real head but wrongly hashed, and one hashed right but
linked to a made-up head are appended to the tenant's partition. The projector used to project
them as they came: the status showed disabled, version 2, owner ``intruder`` while the agents
kept enabled, version 1 (and the audit found no ``projection.diff``: the rebuild replayed the
same records). Now each is refused (the first three before projection, the last by its chain
condition, ``ChainLink`` on the tenant's training chain head); the admin's genuine disable
afterwards shows; and the fresh and parallel rebuilds write the same status, chain head,
quarantine and fence as the live projector.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.projections.fresh import FreshReplay
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.parallel import replay_parallel
from ledgerflow.redisclient import async_client
from ledgerflow.topics import TRAINING_AUDIT
from tests.integration.test_forged_reference import _audit, _post, _send, forged_disable
from tests.integration.test_projection_writer import drop, new_keys
from tests.support.processes import Process

TENANT = "ft-acme"
TIMEOUT_S = 90.0


def _forged(real: Any) -> list[bytes]:
    disable, wrong_hash = forged_disable(real)
    off_chain = link_event(disable, ChainHead(TENANT, 1, "ab" * 32))  # hashes right, links to nothing
    return [codec.encode(x) for x in (real, disable, wrong_hash, off_chain)]


def _status(edge: str, token: str) -> dict[str, Any]:
    answer = httpx.get(f"{edge}/v1/training/status", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _wait(what: str, check: Callable[[], bool], worker: Process) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        if check():
            return
        time.sleep(0.3)
    raise AssertionError(f"{what} not within {TIMEOUT_S:.0f} s\n{worker.log_tail()}")


def _redis(settings: Settings, scenario: Callable[[Any], Any]) -> Any:
    async def run() -> Any:
        redis = async_client(settings.redis_url, socket_timeout=30)
        try:
            return await scenario(redis)
        finally:
            await redis.aclose()

    return asyncio.run(run())


def _projected_up_to(settings: Settings, keys: Keys, partition: int, offset: int) -> bool:
    async def read(redis: Any) -> bool:
        cursor = f"{settings.topic(TRAINING_AUDIT)}:{partition}"
        got = await redis.hget(keys.checkpoint("read-models"), cursor)
        return got is not None and int(got) >= offset

    return bool(_redis(settings, read))


async def _training_keys(redis: Any, keys: Keys) -> dict[str, dict[bytes, bytes]]:
    names = {
        "status": keys.training(TENANT),
        "head": keys.training_chain(TENANT),
        "head fence": keys.training_chain(TENANT) + ":applied",
        "quarantine": keys.training_quarantine(TENANT),
        "tenant fence": keys.tenant_fence(TENANT),
    }
    return {what: await redis.hgetall(key) for what, key in names.items()}


def test_forged_training_records_change_neither_the_status_nor_a_rebuild(
    settings: Settings, worker: Process, edge: str, tokens, log_dir: Path
) -> None:
    admin = tokens(TENANT, "admin")
    enabled = _post(edge, admin, "/v1/training/enable", {"reason": "fine-tune", "ttl_seconds": 3600})
    assert enabled.status_code == 200, enabled.text
    assert (enabled.json()["outcome"], enabled.json()["version"]) == ("TrainingEnabled", 1)
    [(real_raw, real)] = _audit(settings)
    _wait("the enable in the status", lambda: _status(edge, admin)["version"] == 1, worker)
    genuine = _status(edge, admin)
    assert genuine["state"] == "enabled"

    forged = _forged(real)
    partition = real_raw.partition
    asyncio.run(_send(settings, TRAINING_AUDIT, [(TENANT.encode(), v, partition) for v in forged]))
    live = Keys.for_prefix(settings.topic_prefix)
    last = real_raw.offset + len(forged)
    projected = lambda: _projected_up_to(settings, live, partition, last)  # noqa: E731
    _wait("the projector past the forged records", projected, worker)

    assert _status(edge, admin) == genuine, "a forged training record reached GET /v1/training/status"
    quarantined = _redis(settings, lambda r: r.hgetall(live.training_quarantine(TENANT)))
    topic = settings.topic(TRAINING_AUDIT)
    assert quarantined == {
        f"{topic}:{partition}@{real_raw.offset + 1}".encode(): b"duplicate",
        f"{topic}:{partition}@{last}".encode(): b"broken-link",
    }, quarantined

    genuine_disable_shows(edge, admin, worker, genuine)
    ours, fresh, parallel = live_and_rebuilt(settings, live)
    assert ours["status"][b"version"] == b"2" and ours["status"][b"owner"] != b"intruder"
    assert fresh == ours, "the fresh rebuild's training read model differs from the live one"
    assert parallel == ours, "the parallel rebuild's training read model differs from the live one"


def genuine_disable_shows(edge: str, admin: str, worker: Process, genuine: dict[str, Any]) -> None:
    """The admin's disable after a forgery: answered as version 2 and shown as the admin's."""
    disabled = _post(edge, admin, "/v1/training/disable", {"reason": "done"})
    assert disabled.status_code == 200, disabled.text
    assert (disabled.json()["outcome"], disabled.json()["version"]) == ("TrainingDisabled", 2)
    _wait("the genuine disable in the status", lambda: _status(edge, admin)["version"] == 2, worker)
    shown = _status(edge, admin)
    assert (shown["state"], shown["reason"]) == ("disabled", "done")
    assert shown["owner"] == genuine["owner"] != "intruder"


def live_and_rebuilt(settings: Settings, live: Keys) -> tuple[Any, Any, Any]:
    """The training keys of the live space, of a fresh rebuild and of a parallel one (dropped after)."""

    async def rebuilt(redis: Any) -> tuple[Any, Any, Any]:
        fresh, parallel = new_keys(), new_keys()
        try:
            await FreshReplay(settings, redis, fresh).run()
            await replay_parallel(settings, redis, parallel, processes=2)
            ours = await _training_keys(redis, live)
            return ours, await _training_keys(redis, fresh), await _training_keys(redis, parallel)
        finally:
            await drop(redis, fresh, parallel)

    return _redis(settings, rebuilt)
