"""The one place that makes Redis clients from ``LEDGERFLOW_REDIS_URL``.

``redis://`` / ``rediss://`` give today's single-server client; ``redis+cluster://`` /
``rediss+cluster://`` give redis-py's cluster client, which learns the other nodes and the slot
map from the nodes the URL names and follows ``MOVED``/``ASK`` redirections and failovers. A
cluster URL may name several nodes, ``redis+cluster://h1:7000,h2:7001,h3:7002/0``: a client
made while one of them is down still starts from another (one address is enough while it runs).
The URL carries the choice, so every process started with the same settings (workers, edges,
their children) makes the same kind of client.

The cluster clients are typed as the single-server ones: they implement every command ledgerflow
sends with the same signatures (the integration tests run in both modes, ``LEDGERFLOW_TEST_REDIS``),
so callers stay written once. What differs on a cluster is documented where it matters: every Lua
call's KEYS share one slot, a pipeline with ``transaction=True`` touches one slot only, and
``scan_iter`` walks every primary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast
from urllib.parse import urlsplit, urlunsplit

import redis as redis_sync
import redis.asyncio as aioredis
from redis import exceptions as redis_exceptions
from redis.asyncio.cluster import ClusterNode as AsyncClusterNode
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import AbstractConnection as AsyncConnection
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode as SyncClusterNode
from redis.cluster import RedisCluster as SyncRedisCluster
from redis.exceptions import ClusterDownError, RedisClusterException, TryAgainError
from redis.retry import Retry as SyncRetry

from ledgerflow.digits import ascii_digits

CLUSTER_SUFFIX = "+cluster"
# A failover takes about cluster-node-timeout plus an election (seconds): the client retries a
# command a few times with a short backoff, then the caller's own backoff or a 503 takes over.
CLUSTER_RETRIES = 3

REPLICA_WAIT_MS = 100
"""How long a write that must survive a failover waits for a replica's ``WAIT 1`` (on loopback a
replica in sync answers in well under a millisecond)."""

CLAIM_WAIT_MS = 500
"""``set_replicated``'s wait: a write no replica confirmed in time is refused (503), so a replica
slowed for a moment (a fork, a loaded host) gets longer than the projector's ``REPLICA_WAIT_MS``,
after which the projector goes on anyway."""

REFUSING: tuple[type[Exception], ...] = (
    redis_exceptions.OutOfMemoryError,
    redis_exceptions.ReadOnlyError,
    redis_exceptions.BusyLoadingError,
    redis_exceptions.MasterDownError,
)
"""The redis-py classes of a Redis that is up but cannot take the command now (at ``maxmemory``
with no eviction, a replica or a demoted master, loading its data after a restart, a replica whose
master is down). Callers ask :func:`refusing`, which knows the refusals redis-py has no class for."""

REFUSALS = frozenset({"BUSY", "MISCONF", "LOADING", "MASTERDOWN", "READONLY", "OOM", "NOREPLICAS"})
"""The error codes of a Redis refusing a command for its own state, not for the command: ``BUSY``
(a script or function running past ``busy-reply-threshold``), ``MISCONF`` (its last background
save failed and ``stop-writes-on-bgsave-error`` is on), ``LOADING``, ``MASTERDOWN``,
``READONLY``, ``OOM``, ``NOREPLICAS`` (fewer replicas than ``min-replicas-to-write``). redis-py
raises a plain ResponseError for ``BUSY``, ``MISCONF`` and ``NOREPLICAS``."""

_PIPELINE_NOTE = " of pipeline caused error: "


def error_code(exc: BaseException) -> str | None:
    """Pure: the code of a Redis error reply (its first word: ``BUSY``, ``WRONGTYPE``…), also when
    a redis-py pipeline prefixed the reply with the command that got it; None for anything else."""
    code = getattr(exc, "status_code", None)  # set by redis-py for the codes it has a class for
    if code and isinstance(exc, redis_exceptions.RedisError):
        return str(code)
    if not isinstance(exc, redis_exceptions.ResponseError):
        return None
    reply = str(exc.args[0]) if exc.args else ""
    # A pipeline's: "Command # 1 (EVALSHA …) of pipeline caused error: ('BUSY Redis is busy …',)".
    _, note, quoted = reply.rpartition(_PIPELINE_NOTE)
    if note:
        reply = quoted.lstrip("('\"")
    return reply.split(" ", 1)[0] or None


def refusing(exc: BaseException) -> bool:
    """Pure: whether ``exc`` is a Redis that is up but refuses commands for now (``REFUSALS``):
    a dependency fault like a connection error (the edge's 503 with Retry-After, the projector's
    back-off), not a bug. Any other error reply (``WRONGTYPE``, a script's own error) is not."""
    return isinstance(exc, REFUSING) or error_code(exc) in REFUSALS


UNAVAILABLE: tuple[type[Exception], ...] = (ClusterDownError, TryAgainError, RedisClusterException)
"""What a Redis Cluster raises while it cannot serve a slot (a master down, a failover under way,
no node reachable): transient like a connection error, and handled the same way (back off, 503).
``RedisClusterException`` also covers CROSSSLOT refusals, which ledgerflow's key design rules out
(the cluster-mode tests prove it)."""


def is_cluster(url: str) -> bool:
    """Whether ``url`` names a Redis Cluster (``redis+cluster://`` or ``rediss+cluster://``)."""
    return urlsplit(url).scheme.endswith(CLUSTER_SUFFIX)


def server_url(url: str) -> str:
    """``url`` with the plain scheme redis-py parses and only its first address
    (``redis+cluster://h:p,h2:p2/0`` → ``redis://h:p/0``)."""
    parts = urlsplit(url)
    user, at, hosts = parts.netloc.rpartition("@")
    netloc = user + at + hosts.split(",")[0]
    return urlunsplit(parts._replace(scheme=parts.scheme.removesuffix(CLUSTER_SUFFIX), netloc=netloc))


def addresses(url: str) -> list[tuple[str, int]]:
    """Every ``host:port`` a URL names (a cluster URL may name several; the port defaults to 6379)."""
    hosts = urlsplit(url).netloc.rpartition("@")[2]
    found = []
    for address in hosts.split(","):
        host, colon, port = address.rpartition(":")
        found.append((host, int(port)) if colon and ascii_digits(port) else (address, 6379))
    return found


def node_url(url: str, host: str, port: int) -> str:
    """``url`` for the one server at ``host:port``, plain scheme, credentials, db and options kept."""
    parts = urlsplit(url)
    user, at, _ = parts.netloc.rpartition("@")
    scheme = parts.scheme.removesuffix(CLUSTER_SUFFIX)
    return urlunsplit(parts._replace(scheme=scheme, netloc=f"{user}{at}{host}:{port}"))


class NotAClusterError(redis_sync.ConnectionError):
    """A cluster URL names a server that answers as one Redis (``cluster_enabled:0``), and no node
    of a cluster answers: not "down", a wrong URL, and the operator is told so."""

    def __init__(self, url: str, singles: list[tuple[str, int]]) -> None:
        self.singles = singles
        names = ", ".join(f"{host}:{port}" for host, port in singles)
        super().__init__(
            f"{names} answers as one Redis, not as a node of a Redis Cluster: use "
            f"{node_url(url, *singles[0])} for one Redis, or name the cluster's nodes"
        )


def single_servers(url: str, timeout: float) -> list[tuple[str, int]]:
    """The addresses of ``url`` that answer as one Redis (cluster mode off); the others are silent,
    refuse, or are cluster nodes."""
    found = []
    for host, port in addresses(url):
        try:
            with redis_sync.Redis.from_url(
                node_url(url, host, port), socket_timeout=timeout, socket_connect_timeout=timeout
            ) as client:
                if in_cluster_mode(client) is False:
                    found.append((host, port))
        except (redis_sync.RedisError, OSError):
            continue
    return found


def in_cluster_mode(client: redis_sync.Redis) -> bool | None:
    """Whether the one server ``client`` talks to runs in cluster mode (``INFO cluster``); None if
    it does not say (a server or proxy that refuses INFO)."""
    try:
        info = client.info("cluster")
    except redis_sync.ResponseError:
        return None
    return bool(int(info.get("cluster_enabled", 0)))


def cluster_url(url: str) -> str:
    """``url`` with the cluster scheme (``redis://h:p/0`` → ``redis+cluster://h:p/0``)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme=parts.scheme.removesuffix(CLUSTER_SUFFIX) + CLUSTER_SUFFIX))


def async_client(url: str, **options: Any) -> aioredis.Redis:
    """An asyncio client for ``url``; ``options`` are redis-py connection options
    (``socket_timeout``, ``socket_connect_timeout``, …)."""
    if not is_cluster(url):
        return aioredis.Redis.from_url(url, **options)
    from redis.asyncio.retry import Retry

    options.setdefault("retry", Retry(ExponentialBackoff(cap=1.0, base=0.1), CLUSTER_RETRIES))
    timeouts = {k: v for k, v in options.items() if k in ("socket_timeout", "socket_connect_timeout")}
    others = [AsyncClusterNode(h, p, **timeouts) for h, p in addresses(url)[1:]]
    options.setdefault("startup_nodes", others)
    client = AsyncRedisCluster.from_url(server_url(url), **options)
    return cast(aioredis.Redis, client)  # same command surface, see the module docstring


def sync_client(url: str, **options: Any) -> redis_sync.Redis:
    """A blocking client for ``url`` (CLI checks, tests' inspection)."""
    if not is_cluster(url):
        return redis_sync.Redis.from_url(url, **options)
    options.setdefault("retry", SyncRetry(ExponentialBackoff(cap=1.0, base=0.1), CLUSTER_RETRIES))
    others = [SyncClusterNode(h, p) for h, p in addresses(url)[1:]]  # type: ignore[no-untyped-call]
    options.setdefault("startup_nodes", others)
    try:  # the blocking cluster client reads the slot map at once: no node answering fails here
        client = SyncRedisCluster.from_url(server_url(url), **options)
    except RedisClusterException as exc:
        # redis-py keeps only the last node's failure: which of "refused" and "not a cluster" it
        # shows depends on the order it tried them, so the nodes are asked again, one by one
        singles = single_servers(url, float(options.get("socket_connect_timeout") or 3.0))
        if singles:
            raise NotAClusterError(url, singles) from None
        where = ", ".join(f"{host}:{port}" for host, port in addresses(url))
        raise redis_sync.ConnectionError(f"no node of the Redis Cluster at {where} answers: {exc}") from None
    return cast(redis_sync.Redis, client)


class MasterDemoted(TryAgainError):
    """A ``WAIT`` reached a node that is a replica now: the slot map it was looked up in is older
    than a failover. Whether the writes before it reached a replica is unknown, so nothing may be
    acknowledged on them; transient like the failover itself (the caller backs off or answers 503)."""


DEMOTED_REPLIES = (
    "WAIT cannot be used with replica instances",  # sent to a master demoted before it arrived
    "instance state changed (master -> replica",  # UNBLOCKED: demoted while the WAIT waited
)
"""Redis's answers to a ``WAIT`` on a master that is a replica now (a redis-py pipeline names the
command before them)."""


async def execute_waited(pipe: Any) -> list[Any]:
    """``await pipe.execute()`` for a cluster pipeline whose writes are followed by ``WAIT`` on
    their masters: a ``WAIT`` sent to a master demoted since the lookup (its writes were
    redirected to the new master by ``MOVED``, the ``WAIT`` was not), or demoted while the
    ``WAIT`` waited (``UNBLOCKED``), is ``MasterDemoted``, not a
    ResponseError (a 500 at the edge, a stopped projector: seen in ``ledgerflow chaos
    --redis-cluster`` when a paused master was failed over)."""
    try:
        return list(await pipe.execute())
    except redis_sync.ResponseError as exc:
        if not any(reply in str(exc) for reply in DEMOTED_REPLIES):
            raise
        raise MasterDemoted(f"a master was demoted under the call: {exc}") from None


async def _send_on_open_writer(self: AsyncConnection, command: Iterable[bytes]) -> None:
    """redis-py's ``_send_packed_command``, but a writer closed under it is a ConnectionError.

    The cluster client closes a node's connections when the slot map changes (a failover); a
    command writing on one of them then fails with AttributeError or TypeError from the closed
    writer (redis-py issues #3546, #4287; unfixed in 8.1.0), which no retry recognises: a 500 at
    the edge in ``ledgerflow chaos --redis-cluster``. As a ConnectionError the client's own retry
    takes it (a fresh connection, the new slot map), as redis-py's proposed fix (PR #4217) does."""
    writer = self._writer
    try:
        if writer is None:
            raise AttributeError("'NoneType' object has no attribute 'writelines'")
        writer.writelines(command)
        await writer.drain()
    except (AttributeError, TypeError) as exc:
        raise redis_sync.ConnectionError(f"the connection was closed while writing to it: {exc}") from None


AsyncConnection._send_packed_command = _send_on_open_writer  # type: ignore[method-assign]


def is_cluster_client(client: object) -> bool:
    """Whether ``client`` (from ``async_client``/``sync_client``) talks to a Redis Cluster."""
    return isinstance(client, (AsyncRedisCluster, SyncRedisCluster))


async def set_replicated(client: aioredis.Redis, key: str, value: bytes | str, **options: Any) -> Any:
    """``SET key value [options]`` (its reply) that survives a failover: on a cluster, followed on the
    same connection by ``WAIT 1`` (up to ``CLAIM_WAIT_MS``), so the caller acknowledges only what
    the master's replica holds too. A write that a connected replica did not confirm in time is
    ReplicaNotConfirmed (it stays on the master; undoing it is the caller's choice). A master with
    no replica connected (a cluster without replicas, or just after a failover until the old node
    rejoins) has none a failover could promote without the write: it is acknowledged as on one
    Redis. On one Redis (no replica to wait for) a plain SET."""
    if not is_cluster_client(client):
        return await client.set(key, value, **options)
    await client.initialize()  # the slot map, before it is looked up
    pipe = client.pipeline(transaction=False)
    pipe.set(key, value, **options)
    node = client.get_node_from_key(key)  # type: ignore[attr-defined]
    pipe.execute_command("WAIT", 1, CLAIM_WAIT_MS, target_nodes=node)
    reply, replicas = await execute_waited(pipe)
    if reply and replicas < 1:  # the rare path: is a replica there that could be promoted without it?
        role = await client.execute_command("ROLE", target_nodes=node)  # type: ignore[no-untyped-call]
        replicas = confirmed_by_absence(role)
    return confirmed(reply, replicas)


def confirmed_by_absence(role: Any) -> int:
    """Pure: from a master's ``ROLE`` reply, 1 when it has no replica connected (no failover can
    promote a node that lacks the write: as safe as one Redis), else 0 (a connected replica did
    not confirm). Anything but a master's reply is 0."""
    if not isinstance(role, (list, tuple)) or len(role) < 3:
        return 0
    kind = role[0].decode() if isinstance(role[0], bytes) else role[0]
    return 1 if kind == "master" and not role[2] else 0


class ReplicaNotConfirmed(TryAgainError):
    """A write that must survive a failover reached its master, but its connected replica did not
    confirm it within ``CLAIM_WAIT_MS`` (paused, or behind). A failover now could forget it, so
    nothing may be acknowledged on it; transient (the caller backs off or answers 503)."""


def confirmed(reply: Any, replicas: int) -> Any:
    """Pure: the reply of a ``SET`` followed by ``WAIT 1`` that returned ``replicas``, or
    ReplicaNotConfirmed if the ``SET`` wrote (a truthy reply) and no replica holds it. A ``SET``
    that wrote nothing (``NX`` on a taken key) has nothing to confirm."""
    if reply and replicas < 1:
        raise ReplicaNotConfirmed(f"no replica confirmed the write within {CLAIM_WAIT_MS} ms")
    return reply
