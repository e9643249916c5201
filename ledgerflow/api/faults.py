"""Dependency faults have one face: every call the edge makes to Redis or Kafka on a
request's path is bounded by ``DEADLINE_S`` and any failure of it — a dependency down, slow,
or up but refusing for now (a Redis that is BUSY, MISCONF, READONLY, OOM, LOADING:
``redisclient.refusing``) — becomes ``InfrastructureError`` (503 problem+json with
``Retry-After``), never a 500 or a hang. Any other Redis error reply (``WRONGTYPE``, a script's
own error) is not a dependency fault and propagates as it is.

Bounds, stated once:

- ``DEADLINE_S`` (5 s): the longest one dependency call may take on a request's path
  (a Kafka publish including its metadata wait, a Redis command including its retry).
- ``REDIS_SOCKET_TIMEOUT_S`` / ``REDIS_CONNECT_TIMEOUT_S``: the Redis client's own socket
  bounds, with one retry, so a dead Redis answers within ``DEADLINE_S``.
- ``KAFKA_REQUEST_TIMEOUT_MS``: the producer's request timeout; a record that could not be
  sent within it expires in the producer instead of being sent late.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import redis.exceptions
from aiokafka.errors import KafkaError

from ledgerflow.errors import InfrastructureError
from ledgerflow.redisclient import UNAVAILABLE, error_code, refusing

__all__ = [
    "DEADLINE_S",
    "KAFKA_REQUEST_TIMEOUT_MS",
    "REDIS_CONNECT_TIMEOUT_S",
    "REDIS_SOCKET_TIMEOUT_S",
    "bounded",
    "bounded_retried",
]

DEADLINE_S = 5.0
REDIS_SOCKET_TIMEOUT_S = 2.0
REDIS_CONNECT_TIMEOUT_S = 1.0
KAFKA_REQUEST_TIMEOUT_MS = 5000

T = TypeVar("T")

_FAULTS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    *UNAVAILABLE,  # a Redis Cluster failing over
    KafkaError,
    TimeoutError,
    ConnectionError,
)


def dependency_fault(exc: BaseException) -> bool:
    """Pure: whether ``exc`` is a dependency's failure (down, slow, or refusing for now: a Redis
    that is BUSY, MISCONF, READONLY, OOM, LOADING…, ``redisclient.refusing``), not a bug."""
    return isinstance(exc, _FAULTS) or refusing(exc)


async def bounded(call: Awaitable[T], what: str, timeout: float = DEADLINE_S) -> T:
    """``await call`` within ``timeout`` s; a timeout or a Redis/Kafka error becomes
    InfrastructureError naming ``what`` (e.g. "Redis idempotency claim")."""
    try:
        async with asyncio.timeout(timeout):
            return await call
    except Exception as exc:
        if not dependency_fault(exc):
            raise  # an answer no retry changes (WRONGTYPE, a script's error) or a bug: as it is
        raise InfrastructureError(f"{what} failed: {_named(exc)}") from None


def _named(exc: BaseException) -> str:
    """``exc`` for a log line: its type and, for a Redis refusal, its code (redis-py's repr of a
    Redis error names only its type: ``server:ResponseError``)."""
    return f"{exc!r} ({error_code(exc)})" if refusing(exc) else repr(exc)


async def bounded_retried(
    make_call: Callable[[], Awaitable[T]],
    what: str,
    timeout: float = DEADLINE_S,
    first_pause: float = 0.1,
) -> T:
    """``bounded(make_call(), what)`` tried again after a pause (doubling from ``first_pause``)
    while it fails and ``timeout`` s in all have not passed; the last InfrastructureError
    propagates. For a write that must land once a request is past its point of no return (an
    idempotency claim's position after its event is on the log): a Redis Cluster failover takes
    ~1–3 s, longer than the client's own retries, and a write given up during it is lost to every
    retry of the request. ``make_call`` must be idempotent (each attempt is a fresh call)."""
    deadline = time.monotonic() + timeout
    pause = first_pause
    while True:
        remaining = deadline - time.monotonic()
        try:
            return await bounded(make_call(), what, remaining)
        except InfrastructureError:
            if deadline - time.monotonic() <= pause:
                raise
        await asyncio.sleep(pause)
        pause *= 2
