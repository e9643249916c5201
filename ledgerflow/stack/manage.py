"""``ledgerflow stack up | down | status``: the local Kafka + Redis, started and stopped as one.

``up`` sequence:
1. Start Redis (unless ``LEDGERFLOW_REDIS_URL`` points at one that runs) and PING it.
2. Start Kafka (unless ``LEDGERFLOW_KAFKA_BOOTSTRAP`` points at one that runs).
3. Create the topics, then prove a real produce/consume round trip.
4. Create the dev signing key and JWKS (when the edge uses the local JWKS file), and the dev
   rule-pack publisher key (when the policy trust store is the dev one); a key created is
   recorded on ``identity.audit``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

import redis as redis_sync

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.admin import ensure_topics, round_trip
from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import Managed, stop


@dataclass(frozen=True, slots=True)
class StackNodes:
    kafka: kafka_stack.KafkaNode
    redis: redis_stack.RedisNode


def nodes(settings: Settings) -> StackNodes:
    host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
    url = urlparse(settings.redis_url)
    return StackNodes(
        kafka=kafka_stack.KafkaNode(settings.state_dir, host or "127.0.0.1", int(port)),
        redis=redis_stack.RedisNode(settings.state_dir, url.hostname or "127.0.0.1", url.port or 6379),
    )


def up(settings: Settings, say: Callable[[str], None] = print) -> dict[str, object]:
    """Bring the stack up (idempotent); return when Kafka and Redis really answer."""
    n = nodes(settings)
    began = time.monotonic()
    if not settings.redis_external:  # Step 1.
        say(f"redis: starting on {n.redis.host}:{n.redis.port} …")
        redis_stack.start(n.redis)
    ping_redis(settings.redis_url)
    say(f"redis: PONG from {settings.redis_url}")
    if not settings.kafka_external:  # Step 2.
        say(f"kafka {kafka_stack.KAFKA_VERSION}: starting on {n.kafka.host}:{n.kafka.port} (KRaft) …")
        kafka_stack.start(n.kafka)
    created = asyncio.run(ensure_topics(settings))  # Step 3.
    if created:
        say(f"kafka: created {len(created)} topics")
    rtt = asyncio.run(round_trip(settings))
    say(f"kafka: produce/consume round trip ok in {rtt * 1000:.0f} ms")
    from ledgerflow.identity.cli import ensure_recorded  # Step 4 (recorded on identity.audit)

    ensure_recorded(settings)
    say(f"stack up in {time.monotonic() - began:.1f} s")
    return status(settings)


def down(settings: Settings, say: Callable[[str], None] = print) -> list[str]:
    """Stop exactly the processes this state directory started."""
    n = nodes(settings)
    stopped = []
    for proc in (*service_processes(settings), n.kafka.process, n.redis.process):
        if stop(proc):
            stopped.append(proc.name)
            say(f"{proc.name}: stopped")
    return stopped


def service_processes(settings: Settings) -> tuple[Managed, ...]:
    """Worker and edge processes started by ``demo`` (stopped before the stack)."""
    run = settings.state_dir / "run"
    return (
        Managed("edge", run / "edge.pid", ("ledgerflow",)),
        Managed("worker", run / "worker.pid", ("ledgerflow",)),
    )


def status(settings: Settings) -> dict[str, object]:
    n = nodes(settings)
    return {
        "kafka": {
            "bootstrap": settings.kafka_bootstrap,
            "managed": not settings.kafka_external,
            "pid": n.kafka.process.pid(),
            "version": kafka_stack.KAFKA_VERSION,
            "log": str(n.kafka.log_file),
        },
        "redis": {
            "url": settings.redis_url,
            "managed": not settings.redis_external,
            "pid": n.redis.process.pid(),
            "log": str(n.redis.log_file),
        },
        "http": f"http://{settings.http}",
        "state_dir": str(settings.state_dir),
        "jwks": settings.jwks_location,
        "processes": {p.name: p.pid() for p in service_processes(settings)},
    }


def ping_redis(url: str, timeout: float = 10.0) -> None:
    client = redis_sync.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if client.ping():
                    return
            except redis_sync.RedisError as exc:
                if time.monotonic() > deadline:
                    raise InfrastructureError(f"Redis at {url} does not answer PING: {exc}") from None
                time.sleep(0.2)
    finally:
        client.close()
