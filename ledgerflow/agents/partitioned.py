"""What an agent holds per owned partition, and the ownership lock it shares with the worker."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

State = TypeVar("State")


class PartitionOwner(Generic[State]):
    """Per-partition state, kept while this worker owns the partition and dropped on revocation
    (the next owner recovers it from the log); ``use_lock`` shares the worker's ownership lock
    so batches, timers and rebalances never interleave."""

    def __init__(self) -> None:
        self._partitions: dict[int, State] = {}
        self._lock = asyncio.Lock()

    def use_lock(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    def revoke(self, partitions: set[int]) -> None:
        for p in partitions:
            self._partitions.pop(p, None)
