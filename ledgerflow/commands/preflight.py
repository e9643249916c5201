"""Before a verb starts its real work: do Kafka, its topics and Redis answer?

A failure here is one sentence naming the address, the variable and the flag that set it,
instead of a library traceback from deep inside a start-up sequence.
"""

from __future__ import annotations

import redis as redis_sync
from aiokafka.errors import KafkaError

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.redisclient import (
    NotAClusterError,
    addresses,
    cluster_url,
    in_cluster_mode,
    is_cluster,
    sync_client,
)
from ledgerflow.redispolicy import check_policy
from ledgerflow.topics import all_topics

CONNECT_TIMEOUT_S = 3.0


def require_redis(settings: Settings) -> None:
    try:  # a cluster client reads the slot map when made: that can fail too
        client = sync_client(
            settings.redis_url, socket_timeout=CONNECT_TIMEOUT_S, socket_connect_timeout=CONNECT_TIMEOUT_S
        )
        try:
            client.ping()
            # a redis:// client on a cluster node answers PING, and MOVED for every key of the other
            # nodes' slots: the edge would start, say it is ready and answer 503 to every read
            clustered = not is_cluster(settings.redis_url) and in_cluster_mode(client)
        finally:
            client.close()
    except NotAClusterError as exc:
        raise InfrastructureError(f"LEDGERFLOW_REDIS_URL / --redis {settings.redis_url}: {exc}") from None
    except (redis_sync.RedisError, OSError) as exc:
        raise InfrastructureError(
            f"no Redis answers at {settings.redis_url} ({type(exc).__name__}): start the local stack "
            "(`ledgerflow stack up`) or fix LEDGERFLOW_REDIS_URL / --redis"
        ) from None
    if clustered:
        host, port = addresses(settings.redis_url)[0]
        raise InfrastructureError(
            f"LEDGERFLOW_REDIS_URL / --redis {settings.redis_url}: {host}:{port} is a node of a Redis "
            f"Cluster, which a redis:// client cannot use: use {cluster_url(settings.redis_url)}"
        )


def require_noeviction(settings: Settings, *, reachable: bool = True) -> str | None:
    """Refuse (InfrastructureError, one line) a Redis that may evict keys (``redispolicy``); return
    the warning to show when its policy cannot be read. ``reachable=False``: a Redis that does not
    answer is a warning too (the worker starts without Redis and waits for it)."""
    try:
        return check_policy(settings.redis_url, CONNECT_TIMEOUT_S)
    except (redis_sync.RedisError, OSError) as exc:
        if reachable:
            raise InfrastructureError(
                f"no Redis answers at {settings.redis_url} ({type(exc).__name__}): start the local stack "
                "(`ledgerflow stack up`) or fix LEDGERFLOW_REDIS_URL / --redis"
            ) from None
        return (
            f"Redis at {settings.redis_url} did not answer ({type(exc).__name__}): its maxmemory-policy "
            "was not checked (ledgerflow needs noeviction)"
        )


async def require_topics(settings: Settings) -> dict[str, int]:
    """Partition count of every ledgerflow topic; one sentence when the broker or a topic is missing."""
    names = [settings.topic(spec.base) for spec in all_topics()]
    try:
        return await partition_counts(settings, names)
    except KafkaError as exc:
        raise InfrastructureError(
            f"no Kafka broker answers at {settings.kafka_bootstrap} ({type(exc).__name__}): start the "
            "local stack (`ledgerflow stack up`) or fix LEDGERFLOW_KAFKA_BOOTSTRAP / --kafka"
        ) from None
