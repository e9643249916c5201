"""Capped exponential backoff around the projector's Redis calls, one log line per outage.

``Backoff.run(step)`` runs ``step`` until it returns. A Redis failure (connection refused
or reset, timeout, a cluster failing over) or a Redis that is up but refusing commands for now
(``redisclient.refusing``: BUSY, MISCONF, READONLY, OOM, LOADING, MASTERDOWN, NOREPLICAS) is
retried after a capped exponential wait (``ledgerflow.retry``, stretched by up to ``JITTER``);
the first failure of an outage logs one warning and sets ``ledgerflow_projector_redis_up``
to 0, the first success after it logs one line with the outage's length and sets it to 1.
Anything else (``WRONGTYPE``, a script's own error, a bug) propagates.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ledgerflow.projections.metrics import REDIS_OUTAGES, REDIS_RETRIES, REDIS_UP
from ledgerflow.redisclient import UNAVAILABLE, error_code, refusing
from ledgerflow.retry import delay

log = logging.getLogger(__name__)

T = TypeVar("T")
FIRST_S = 0.1
CAP_S = 5.0
JITTER = 0.2  # up to 20 % longer, drawn per retry: projectors that lost Redis together don't retry in step
TRANSIENT: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ConnectionError,
    OSError,
    *UNAVAILABLE,  # a Redis Cluster failing over
)


def transient(exc: BaseException) -> bool:
    """Pure: whether ``exc`` means Redis is unreachable or refusing for now (back off and retry),
    not that the step is wrong (propagate)."""
    return isinstance(exc, TRANSIENT) or refusing(exc)


class Backoff:
    def __init__(
        self,
        what: str,
        first: float = FIRST_S,
        cap: float = CAP_S,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._what, self._first, self._cap, self._sleep = what, first, cap, sleep
        self._down_since: float | None = None
        self._retries = 0

    @property
    def down(self) -> bool:
        return self._down_since is not None

    async def run(self, step: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                result = await step()
            except Exception as exc:
                if not transient(exc):
                    raise
                attempt += 1
                self._failed(exc)
                await self._sleep(delay(attempt, self._first, self._cap, random.random() * JITTER))
                continue
            self._recovered()
            return result

    def _failed(self, exc: BaseException) -> None:
        self._retries += 1
        REDIS_RETRIES.inc()
        if self._down_since is None:
            self._down_since = time.monotonic()
            REDIS_OUTAGES.inc()
            REDIS_UP.set(0)
            log.warning(
                "%s: Redis %s (%s: %s); backing off (up to %.0f s between tries) until it returns",
                self._what,
                f"refusing commands: {error_code(exc)}" if refusing(exc) else "unreachable",
                type(exc).__name__,
                str(exc)[:200],
                self._cap,
            )

    def _recovered(self) -> None:
        if self._down_since is None:
            return
        log.warning(
            "%s: Redis is back after %.1f s (%d retries); resuming",
            self._what,
            time.monotonic() - self._down_since,
            self._retries,
        )
        self._down_since = None
        self._retries = 0
        REDIS_UP.set(1)
