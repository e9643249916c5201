"""ledgerflow's Redis must never evict a key: ``maxmemory-policy noeviction`` on every node.

An evicting policy loses data without a trace: an idempotency claim (it has a TTL, so
``volatile-*`` policies pick it) evicted under memory pressure lets a retried step publish a
second turn; read-model keys evicted by ``allkeys-*`` leave wrong counts while the space's
sentinel survives, so the projection still counts as complete. With ``noeviction`` a full
Redis refuses writes instead (OOM), which the edge answers with 503 and the projector waits
out: loud and recoverable.

The edge (``ledgerflow serve``) and the worker refuse to start when a node evicts, and the
edge's ``/readyz`` reports a policy changed at run time. The policy is read with
``CONFIG GET maxmemory-policy``; a managed Redis that renames or forbids CONFIG is asked
``INFO memory`` (its ``maxmemory_policy`` field) instead; when neither answers, ledgerflow
warns and goes on (it cannot tell).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis as redis_sync
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ledgerflow.errors import InfrastructureError
from ledgerflow.redisclient import addresses, is_cluster, node_url, sync_client

REQUIRED = "noeviction"
SETTING = "maxmemory-policy"
INFO_FIELD = "maxmemory_policy"
WHY = (
    "an evicted idempotency claim or read-model key is lost without a trace (duplicate turns, wrong "
    "read models); set `maxmemory-policy noeviction` (CONFIG SET and redis.conf) on every node"
)


@dataclass(frozen=True, slots=True)
class PolicyReading:
    """One node's ``maxmemory-policy``; ``policy`` None when it could not be read (``why``: how)."""

    node: str
    policy: str | None
    why: str = ""


@dataclass(frozen=True, slots=True)
class PolicyVerdict:
    """What the readings mean: ``refusal`` (a node evicts) or ``warning`` (a node did not say)."""

    refusal: str | None
    warning: str | None


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def policy_from_config(reply: Mapping[Any, Any]) -> str | None:
    """The policy in a ``CONFIG GET maxmemory-policy`` reply (str or bytes keys), None if absent."""
    for key, value in reply.items():
        if _text(key).lower() == SETTING:
            return _text(value).strip().lower() or None
    return None


def policy_from_info(info: Mapping[Any, Any] | str | bytes) -> str | None:
    """The ``maxmemory_policy`` field of ``INFO memory`` (parsed mapping or raw text), None if absent."""
    if isinstance(info, (str, bytes)):
        fields = dict(line.partition(":")[::2] for line in _text(info).splitlines() if ":" in line)
        return policy_from_info(fields)
    for key, value in info.items():
        if _text(key).strip() == INFO_FIELD:
            return _text(value).strip().lower() or None
    return None


def evicts(policy: str | None) -> bool:
    """Whether a known policy may evict keys (every policy but ``noeviction``)."""
    return policy is not None and policy != REQUIRED


def verdict(url: str, readings: Sequence[PolicyReading]) -> PolicyVerdict:
    """One line refusing ``url`` when a node evicts; else one line warning when a node did not say."""
    evicting = [r for r in readings if evicts(r.policy)]
    refusal = None
    if evicting:
        where = "" if len(readings) == 1 else " on " + ", ".join(r.node for r in evicting)
        policies = ", ".join(sorted({str(r.policy) for r in evicting}))
        refusal = (
            f"Redis at {url} evicts keys (maxmemory-policy {policies}{where}); "
            f"ledgerflow needs {REQUIRED}: {WHY}"
        )
    unknown = [r for r in readings if r.policy is None]
    warning = None
    if unknown:
        why = "; ".join(f"{r.node}: {r.why}" for r in unknown)
        warning = (
            f"could not read maxmemory-policy of Redis at {url} ({why}); ledgerflow needs {REQUIRED}: "
            "make sure it is set, an evicting policy loses data without a trace"
        )
    return PolicyVerdict(refusal, warning)


def readiness_reason(readings: Sequence[PolicyReading]) -> str | None:
    """``/readyz``'s reason when a node evicts (``evicts keys (maxmemory-policy allkeys-lru)``), else None."""
    evicting = sorted({str(r.policy) for r in readings if evicts(r.policy)})
    return f"evicts keys (maxmemory-policy {', '.join(evicting)})" if evicting else None


def _refused(exc: Exception) -> str:
    """The error reply, code first (``ERR unknown command …``, ``NOPERM …``), 80 characters at most."""
    code, text = getattr(exc, "status_code", None), " ".join(str(exc).split())
    reply = f"{code} {text}" if code and not text.startswith(code) else text or type(exc).__name__
    return reply if len(reply) <= 80 else reply[:79] + "…"


def read_sync(client: redis_sync.Redis, node: str) -> PolicyReading:
    """The policy of the one server ``client`` talks to; connection errors propagate."""
    try:
        found = policy_from_config(client.config_get(SETTING))
        if found is not None:
            return PolicyReading(node, found)
        config_why = "CONFIG GET answered nothing"
    except ResponseError as exc:  # renamed, disabled or not permitted (NOPERM) on a managed Redis
        config_why = f"CONFIG GET refused: {_refused(exc)}"
    try:
        return PolicyReading(
            node,
            policy_from_info(client.info("memory")),
            f"{config_why}; INFO memory has no maxmemory_policy",
        )
    except ResponseError as exc:
        return PolicyReading(node, None, f"{config_why}; INFO refused: {_refused(exc)}")


async def read_async(client: aioredis.Redis, node: str, **target: Any) -> PolicyReading:
    """``read_sync`` for an asyncio client (``target``: ``target_nodes=`` for a cluster client)."""
    try:
        found = policy_from_config(await client.config_get(SETTING, **target))
        if found is not None:
            return PolicyReading(node, found)
        config_why = "CONFIG GET answered nothing"
    except ResponseError as exc:
        config_why = f"CONFIG GET refused: {_refused(exc)}"
    try:
        info = await client.info("memory", **target)
        return PolicyReading(
            node, policy_from_info(info), f"{config_why}; INFO memory has no maxmemory_policy"
        )
    except ResponseError as exc:
        return PolicyReading(node, None, f"{config_why}; INFO refused: {_refused(exc)}")


def node_addresses(url: str, timeout: float) -> list[tuple[str, int]]:
    """The servers whose policy counts: the one of a ``redis://`` URL, every node of a cluster
    (replicas too: a replica promoted by a failover keeps its own policy)."""
    if not is_cluster(url):
        return addresses(url)[:1]
    cluster = sync_client(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        nodes = cast(redis_sync.RedisCluster, cluster).get_nodes()  # type: ignore[no-untyped-call]
        return [(str(n.host), int(n.port)) for n in nodes]
    finally:
        cluster.close()


def read_policies(url: str, timeout: float) -> list[PolicyReading]:
    """Every relevant node's policy (one connection each). Connection errors propagate when no node
    answers; a cluster node that does not (a replica down, or out of this host's reach) is read as
    unknown — a warning, not a refusal, or one lost replica would stop every edge and worker."""
    readings: list[PolicyReading | BaseException] = []
    nodes = node_addresses(url, timeout)
    for host, port in nodes:
        try:
            with redis_sync.Redis.from_url(
                node_url(url, host, port), socket_timeout=timeout, socket_connect_timeout=timeout
            ) as client:
                readings.append(read_sync(client, f"{host}:{port}"))
        except (RedisError, OSError) as exc:
            readings.append(exc)
    return answered(readings, [f"{host}:{port}" for host, port in nodes])


def answered(readings: Sequence[PolicyReading | BaseException], nodes: Sequence[str]) -> list[PolicyReading]:
    """The readings, a node that could not be asked as unknown (``why``: the error); the first
    error raised when no node answered at all (pure)."""
    if readings and all(isinstance(r, BaseException) for r in readings):
        first = readings[0]
        assert isinstance(first, BaseException)
        raise first
    return [
        r if isinstance(r, PolicyReading) else PolicyReading(node, None, f"unreachable ({type(r).__name__})")
        for r, node in zip(readings, nodes, strict=True)
    ]


def check_policy(url: str, timeout: float) -> str | None:
    """Raise InfrastructureError (one line) when a node of ``url`` evicts; the warning, if any, else None.

    Connection errors propagate: the caller decides whether an absent Redis stops it.
    """
    found = verdict(url, read_policies(url, timeout))
    if found.refusal is not None:
        raise InfrastructureError(found.refusal)
    return found.warning
