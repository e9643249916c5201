"""What ledgerflow requires of its Redis, and ``/readyz`` telling the truth about Redis and Kafka.

Redis tests run their OWN Redis (a private ``redis-server`` on a free port, as ``ledgerflow stack
up`` starts it: no persistence, ``noeviction``) that they reconfigure at will; Kafka is the shared
test broker (each test has its own topic prefix, and only its own topics are touched):

- an evicting ``maxmemory-policy`` stops ``ledgerflow serve`` and ``ledgerflow worker`` at start
  with one line (an evicted idempotency claim or read-model key is lost without a trace);
- ``/readyz`` is 503 while Redis answers PING but refuses every write: at ``maxmemory`` (OOM) and
  as a replica (READONLY), and when its policy is changed to an evicting one at run time; 200 again
  after, without restarting the edge;
- a topic deleted under the edge is ``topic <name> missing`` in ``/readyz``, not a timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from ledgerflow.config import Settings
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import stop as stop_process
from ledgerflow.topics import CONVERSATION_EVENTS, all_topics
from tests.support.processes import Process, free_port, running_edge, start
from tests.support.testtopics import delete_topics

POLL_LIMIT_S = 45.0  # how long a state may take to show before the test fails (a loaded 2-core host)
EXIT_LIMIT_S = 90.0  # how long a refused start may take to exit (interpreter start-up on a loaded host)
REFUSED = "evicts keys (maxmemory-policy {policy}); ledgerflow needs noeviction: "


class PrivateRedis:
    """A redis-server of this test alone (``ledgerflow stack``'s way, in the test's directory)."""

    def __init__(self, state: Path, *extra: str) -> None:
        self.node = redis_stack.RedisNode(state, "127.0.0.1", free_port())
        redis_stack.start(self.node, extra)

    @property
    def url(self) -> str:
        return f"redis://{self.node.host}:{self.node.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=10)

    def config_set(self, name: str, value: str) -> None:
        with self.client() as client:
            client.config_set(name, value)

    def close(self) -> None:
        stop_process(self.node.process)  # the pid file's process, verified by its start time


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    node = PrivateRedis(tmp_path / "redis-a")
    yield node
    node.close()


@pytest.fixture
def other_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A second private Redis, the master the first one is made a replica of."""
    node = PrivateRedis(tmp_path / "redis-b")
    yield node
    node.close()


def test_the_stacks_redis_never_evicts(private_redis: PrivateRedis) -> None:
    with private_redis.client() as client:
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}


def _exited(proc: Process) -> tuple[int, str]:
    try:
        code = proc.popen.wait(EXIT_LIMIT_S)
    except Exception:
        proc.kill()
        raise AssertionError(f"{proc.name} did not stop at start-up:\n{proc.log_tail()}") from None
    return code, proc.log.read_text(errors="replace")


@pytest.mark.parametrize(("verb", "policy"), [("serve", "volatile-lru"), ("worker", "allkeys-random")])
def test_an_evicting_redis_stops_the_start_in_one_line(
    settings: Settings, private_redis: PrivateRedis, log_dir: Path, verb: str, policy: str
) -> None:
    private_redis.config_set("maxmemory-policy", policy)
    mine = settings.with_overrides(redis_url=private_redis.url, http=f"127.0.0.1:{free_port()}")
    code, log = _exited(start(mine, verb, verb, log_dir=log_dir))
    lines = [line for line in log.splitlines() if line.strip()]
    expected = f"ledgerflow: Redis at {private_redis.url} " + REFUSED.format(policy=policy)
    assert code == 1, log
    assert lines and lines[-1].startswith(expected), log
    assert len([line for line in lines if line.startswith("ledgerflow:")]) == 1, log


def test_a_redis_without_config_is_judged_by_info_memory(
    settings: Settings, tmp_path: Path, log_dir: Path
) -> None:
    """A managed Redis often renames or disables CONFIG: its ``INFO memory`` still names the policy."""
    hidden = PrivateRedis(
        tmp_path / "redis-c", "--rename-command", "CONFIG", "", "--maxmemory-policy", "allkeys-lru"
    )
    try:
        mine = settings.with_overrides(redis_url=hidden.url, http=f"127.0.0.1:{free_port()}")
        code, log = _exited(start(mine, "serve", "serve", log_dir=log_dir))
        assert code == 1 and REFUSED.format(policy="allkeys-lru") in log, log
    finally:
        hidden.close()


def test_a_redis_that_hides_its_policy_is_a_warning_not_a_refusal(
    settings: Settings, tmp_path: Path, log_dir: Path
) -> None:
    mute = PrivateRedis(
        tmp_path / "redis-d", "--rename-command", "CONFIG", "", "--rename-command", "INFO", "lf-hidden-info"
    )
    try:
        mine = settings.with_overrides(redis_url=mute.url)
        with running_edge(mine, log_dir) as (edge, base):
            warning = f"warning: could not read maxmemory-policy of Redis at {mute.url} ("
            assert warning in edge.log.read_text(errors="replace"), edge.log_tail()
            _readyz(base, "redis", "ok", edge)  # nothing to judge: ready
    finally:
        mute.close()


def _readyz(base: str, check: str, want: str, edge: Process) -> dict:
    """Poll ``/readyz`` until ``checks[check]`` is ``want`` (503 unless it is ``ok``); its body."""
    began = time.monotonic()
    while True:
        resp = httpx.get(f"{base}/readyz", timeout=15)
        body = resp.json()
        if body.get("checks", {}).get(check) == want:
            assert resp.status_code == (200 if body["checks"] == {"redis": "ok", "kafka": "ok"} else 503)
            if want != "ok":
                assert resp.status_code == 503 and int(resp.headers["retry-after"]) > 0, resp.text
                assert f"{check} {want}" in body["detail"], body
            return body
        if time.monotonic() - began > POLL_LIMIT_S:
            raise AssertionError(
                f"/readyz {check} never {want!r}: {resp.status_code} {resp.text}\n{edge.log_tail()}"
            )
        time.sleep(0.2)


def test_readyz_is_not_ready_while_redis_refuses_writes_or_evicts(
    settings: Settings, private_redis: PrivateRedis, other_redis: PrivateRedis, log_dir: Path
) -> None:
    mine = settings.with_overrides(redis_url=private_redis.url)
    with running_edge(mine, log_dir) as (edge, base):
        _readyz(base, "redis", "ok", edge)

        private_redis.config_set("maxmemory", "1")  # noeviction at maxmemory: every write is OOM
        _readyz(base, "redis", "refuses writes: OOM", edge)
        private_redis.config_set("maxmemory", "0")
        _readyz(base, "redis", "ok", edge)

        with private_redis.client() as client:  # a replica refuses writes: READONLY
            client.replicaof(other_redis.node.host, other_redis.node.port)
        _readyz(base, "redis", "refuses writes: READONLY", edge)
        with private_redis.client() as client:
            client.replicaof("NO", "ONE")
        _readyz(base, "redis", "ok", edge)

        private_redis.config_set("maxmemory-policy", "allkeys-lru")  # changed under a running edge
        _readyz(base, "redis", "evicts keys (maxmemory-policy allkeys-lru)", edge)
        private_redis.config_set("maxmemory-policy", "noeviction")
        _readyz(base, "redis", "ok", edge)


def test_a_deleted_topic_is_named_in_readyz_not_a_timeout(settings: Settings, log_dir: Path) -> None:
    topic = settings.topic(CONVERSATION_EVENTS)
    assert settings.topic_prefix.startswith("t")  # this test's own prefix: no one else's topics
    try:
        with running_edge(settings, log_dir) as (edge, base):
            _readyz(base, "kafka", "ok", edge)
            asyncio.run(delete_topics(settings.kafka_bootstrap, [topic]))
            body = _readyz(base, "kafka", f"topic {topic} missing", edge)
            assert body["checks"]["redis"] == "ok", body
    finally:
        rest = [settings.topic(spec.base) for spec in all_topics() if spec.base != CONVERSATION_EVENTS]
        asyncio.run(delete_topics(settings.kafka_bootstrap, rest))
