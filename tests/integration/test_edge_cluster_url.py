"""A ``redis+cluster://`` URL under which no cluster answers, given to the edge: every node's port
closed, one Redis that is not a cluster next to a closed port (in either order), or a node that
accepts connections and never answers.

``ledgerflow serve`` refuses to start, as it does for a plain ``redis://`` URL that is down: exit 1
and one line saying what is wrong with the URL. The edge's app itself, started anyway (its
lifespan needs only Kafka; the same holds when the cluster goes away right after the check),
answers its Redis-backed endpoints 503 problem+json with ``Retry-After``, ``/readyz`` 503 naming
``redis``: never a 500, never a hang. Kafka is the shared test broker; the single Redis is this
test's own.

The mirror mistake, a plain ``redis://`` URL naming a node of a Redis Cluster (this module's own),
is refused too: that client answers PING and MOVED for every key of the other nodes' slots.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator

import httpx
import pytest

from ledgerflow.api.app import create_app
from ledgerflow.config import Settings
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import stop
from tests.integration import edgekit
from tests.integration.clikit import run_cli
from tests.support.processes import free_port
from tests.support.rediscluster import private_cluster

OPERATIONAL = 1
REQUEST_LIMIT_S = 15.0  # an answer later than this is a hang (the edge's Redis deadline is 2 s)


@pytest.fixture(scope="module")
def single_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a Redis of this module alone, cluster mode off."""
    node = redis_stack.RedisNode(tmp_path_factory.mktemp("single-redis"), "127.0.0.1", free_port())
    redis_stack.start(node)
    yield f"{node.host}:{node.port}"
    stop(node.process)


@pytest.fixture(scope="module")
def silent() -> Iterator[str]:
    """``host:port`` that accepts connections (the kernel's backlog) and never answers a byte."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"127.0.0.1:{s.getsockname()[1]}"


def closed() -> str:
    return f"127.0.0.1:{free_port()}"


def _urls(single: str, silent: str) -> dict[str, str]:
    return {
        "closed,closed": f"redis+cluster://{closed()},{closed()}/0",
        "single,closed": f"redis+cluster://{single},{closed()}/0",
        "closed,single": f"redis+cluster://{closed()},{single}/0",
        "silent": f"redis+cluster://{silent}/0",
    }


KINDS = ["closed,closed", "single,closed", "closed,single", "silent"]


@pytest.mark.parametrize("kind", KINDS)
def test_serve_refuses_with_one_line(settings: Settings, single_redis: str, silent: str, kind: str) -> None:
    url = _urls(single_redis, silent)[kind]
    ran = run_cli(settings, "serve", env={"LEDGERFLOW_REDIS_URL": url, "LEDGERFLOW_HTTP": closed()})
    assert ran.code == OPERATIONAL
    line = ran.one_line()
    if "single" in kind:  # a Redis answers there: "no Redis answers" would send the operator astray
        assert line == (
            f"ledgerflow: LEDGERFLOW_REDIS_URL / --redis {url}: {single_redis} answers as one Redis, "
            f"not as a node of a Redis Cluster: use redis://{single_redis}/0 for one Redis, "
            "or name the cluster's nodes"
        )
    else:
        assert line.startswith(f"ledgerflow: no Redis answers at {url} (ConnectionError): start the local")
    assert "Traceback" not in ran.err


@pytest.mark.parametrize("kind", KINDS)
def test_the_edge_app_answers_503_with_retry_after_never_500(
    settings: Settings, single_redis: str, silent: str, kind: str
) -> None:
    edge = settings.with_overrides(redis_url=_urls(single_redis, silent)[kind])
    headers = {"Authorization": f"Bearer {edgekit.token(edge, 'ops', roles='producer,subscriber')}"}
    step = {"conversation_id": "c1", "turn_id": "t1", "role": "user", "content": "hi", "model": "m"}
    claimed = edgekit.turn("c2") | {"event_id": str(uuid.uuid4())}  # a client id: claimed in Redis

    async def run() -> dict[str, httpx.Response]:
        app = create_app(edge)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://edge") as client:

                async def ask(method: str, path: str, body: dict | None = None) -> httpx.Response:
                    async with asyncio.timeout(REQUEST_LIMIT_S):
                        return await client.request(method, path, headers=headers, json=body)

                return {
                    "/healthz": await ask("GET", "/healthz"),
                    "/readyz": await ask("GET", "/readyz"),
                    "/v1/overview": await ask("GET", "/v1/overview"),
                    "/v1/conversations": await ask("GET", "/v1/conversations"),
                    "/v1/conversations/c1": await ask("GET", "/v1/conversations/c1"),
                    "/v1/training/status": await ask("GET", "/v1/training/status"),
                    "/v1/usage": await ask("GET", "/v1/usage"),
                    "POST /v1/conversation/step": await ask("POST", "/v1/conversation/step", step),
                    "POST /v1/events (client id)": await ask("POST", "/v1/events", claimed),
                    "POST /v1/events": await ask("POST", "/v1/events", edgekit.turn("c3")),
                }

    answers = asyncio.run(run())
    assert answers.pop("/healthz").status_code == 200
    assert answers.pop("POST /v1/events").status_code == 202  # no client id: Kafka alone takes it
    ready = edgekit.assert_problem(answers.pop("/readyz"), 503)
    assert ready["checks"]["redis"] != "ok" and "redis" in ready["detail"], ready
    for what, resp in answers.items():
        edgekit.assert_problem(resp, 503)
        assert int(resp.headers["retry-after"]) > 0, what


def test_serve_refuses_a_plain_url_naming_a_cluster_node(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with private_cluster(tmp_path_factory.mktemp("redis-cluster")) as cluster:
        node = f"{cluster.nodes[0].host}:{cluster.nodes[0].port}"
        url = f"redis://{node}/0"
        # before the check the edge started (ready, 503 on every read) and ran until the timeout
        ran = run_cli(
            settings, "serve", env={"LEDGERFLOW_REDIS_URL": url, "LEDGERFLOW_HTTP": closed()}, timeout=60
        )
    assert (ran.code, ran.one_line()) == (
        OPERATIONAL,
        f"ledgerflow: LEDGERFLOW_REDIS_URL / --redis {url}: {node} is a node of a Redis Cluster, which a "
        f"redis:// client cannot use: use redis+cluster://{node}/0",
    )
