"""The real stack for integration tests: started once per session by the same code as
``ledgerflow stack up``, on its own ports and state directory; each test gets its own
topic prefix (and so its own topics and Redis key space).

``LEDGERFLOW_TEST_REDIS=cluster`` runs the same tests against a private Redis Cluster
(three masters with a replica each, started for the session on free ports, in its own state
dir) instead of the single Redis: every client then is a cluster client (``redis+cluster://``).

If Kafka or Redis cannot be started the tests fail with the reason — never skip.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ledgerflow.config import Settings, load_settings
from ledgerflow.errors import LedgerflowError
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.stack import manage
from tests.integration import edgekit
from tests.support.processes import Process, running_edge, start
from tests.support.rediscluster import private_cluster
from tests.support.redismode import redis_mode
from tests.support.testtopics import drop_left_topics

ROOT = Path(__file__).resolve().parents[2]
TEST_KAFKA = "127.0.0.1:29092"
TEST_REDIS = "redis://127.0.0.1:26379/0"


def _say(msg: str) -> None:
    print(f"[stack] {msg}", file=sys.stderr, flush=True)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    if redis_mode() == "cluster":
        with private_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
            _say(f"redis: a private Redis Cluster at {cluster.url}")
            yield from _stack(redis_url=cluster.url)
    else:
        yield from _stack()


def _stack(redis_url: str | None = None) -> Iterator[Settings]:
    env = load_settings()
    if env.kafka_external or env.redis_external:
        base = env  # the user pointed us at running services: use them, start nothing
    else:
        base = Settings(
            kafka_bootstrap=TEST_KAFKA,
            redis_url=TEST_REDIS,
            state_dir=ROOT / ".ledgerflow-test",
            http="127.0.0.1:0",
        )
    if redis_url is not None:  # the session's cluster: started above, nothing for `up` to start
        base = base.with_overrides(redis_url=redis_url, redis_external=True)
    started_here = manage.nodes(base).kafka.process.pid() is None and not base.kafka_external
    try:
        manage.up(base, say=_say)
    except LedgerflowError as exc:
        pytest.fail(
            f"The real Kafka + Redis stack is required and could not start:\n{exc}\n"
            "Fix the cause above (or run `make test`, which installs prerequisites), "
            "or point LEDGERFLOW_KAFKA_BOOTSTRAP / LEDGERFLOW_REDIS_URL at running services.",
            pytrace=False,
        )
    if not base.kafka_external:  # our own test stack: what earlier sessions' tests left goes
        dropped = asyncio.run(drop_left_topics(base.kafka_bootstrap))
        if dropped:
            _say(f"kafka: deleted {dropped} topics earlier test sessions left")
    yield base
    if started_here:
        manage.down(base, say=_say)


@pytest.fixture
def settings(stack: Settings) -> Settings:
    """Settings with a fresh topic prefix: this test's own topics and read models."""
    prefixed = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(prefixed))
    return prefixed


@pytest.fixture
def log_dir(stack: Settings, request: pytest.FixtureRequest) -> Path:
    return stack.state_dir / "test-logs" / request.node.name[:80]


@pytest.fixture
def worker(settings: Settings, log_dir: Path) -> Iterator[Process]:
    proc = start(settings, "worker", "worker", log_dir=log_dir)
    yield proc
    proc.stop()


@pytest.fixture
def edge(settings: Settings, log_dir: Path) -> Iterator[str]:
    """The edge as a real uvicorn process on a free port; yields its base URL."""
    with running_edge(settings, log_dir) as (_, base):
        yield base


@pytest.fixture
def tokens(stack: Settings):  # type: ignore[no-untyped-def]
    def make(tenant: str = "acme", roles: str = "subscriber,producer", **kw: object) -> str:
        return edgekit.token(stack, "test", tenant, roles, **kw)

    return make


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client
