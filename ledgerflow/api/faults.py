"""Dependency faults have one face: every call the edge makes to Redis or Kafka on a
request's path is bounded by ``DEADLINE_S`` and any failure of it becomes
``InfrastructureError`` (503 problem+json with ``Retry-After``), never a 500 or a hang.

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
from collections.abc import Awaitable
from typing import TypeVar

import redis.exceptions
from aiokafka.errors import KafkaError

from ledgerflow.errors import InfrastructureError
from ledgerflow.redisclient import REFUSING, UNAVAILABLE

__all__ = [
    "DEADLINE_S",
    "KAFKA_REQUEST_TIMEOUT_MS",
    "REDIS_CONNECT_TIMEOUT_S",
    "REDIS_SOCKET_TIMEOUT_S",
    "bounded",
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
    *REFUSING,  # a Redis out of memory, read-only, loading
    KafkaError,
    TimeoutError,
    ConnectionError,
)


async def bounded(call: Awaitable[T], what: str, timeout: float = DEADLINE_S) -> T:
    """``await call`` within ``timeout`` s; a timeout or a Redis/Kafka error becomes
    InfrastructureError naming ``what`` (e.g. "Redis idempotency claim")."""
    try:
        async with asyncio.timeout(timeout):
            return await call
    except _FAULTS as exc:
        raise InfrastructureError(f"{what} failed: {exc!r}") from None
