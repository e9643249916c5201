"""How often the cyclic garbage collector runs in ledgerflow's long-running processes.

CPython collects its youngest generation after every 700 net allocations of container
objects. A worker, a rebuild or an audit allocates a handful of small lists, dicts and
records per Kafka record, so at the default it collected every hundred or so records, and
every tenth collection also scanned the middle generation: py-spy charged the collector's
time to whichever line allocated, and at saturation it was about a sixth of the worker's
CPU per event (`ledgerflow bench`, figure 8; docs/benchmarks.md). Almost nothing the hot
paths allocate is cyclic — records die by reference counting — so collecting less often
costs little memory. ``YOUNG`` raises the first threshold; the older generations keep their
ratios, so the full collections (and CPython's own limit on them) still come in proportion.

A full collection scans every tracked object, and a worker holds ~100,000 of them for its whole
life (modules, functions, classes: faust, aiokafka, the agents). At 1,000 turns/s a worker's
batches are small and no full collection runs at all; when it falls behind (3,000 turns/s on
2 cores) its batches grow, their records get promoted, and full collections of 67–150 ms ran
every few seconds, stalling every turn in flight. ``settle`` (the worker calls it after each
partition assignment, while its batch loop waits for the rebalance anyway) collects everything
once and freezes what survived: later full collections scan only the ~5,000 objects born
since, 8–26 ms at the same rate (docs/benchmarks.md, "the garbage collector's full
collections"). Memory stays bounded: a frozen object is still freed by reference counting, and
each ``settle`` unfreezes before it collects, so a frozen object that ended up in a garbage
cycle is reclaimed at the next rebalance; between two, at most what was alive at the last one
is held. ``time_pauses`` hooks every collection's wall time into a callback (the worker's
``ledgerflow_gc_pause_seconds``).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

__all__ = ["YOUNG", "PauseTimer", "settle", "time_pauses", "tune"]

YOUNG = 5000
"""Container allocations between two collections of the youngest generation (CPython: 700)."""


def tune() -> None:
    """Collect the youngest generation every ``YOUNG`` allocations; the others as by default."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, oldest)


def settle() -> int:
    """Collect every generation, then freeze what survived (``gc.freeze``); the objects frozen.

    Frozen objects are never scanned again, so later full collections only see what was
    promoted since. What was frozen before is unfrozen first: it is collected with the rest,
    so a frozen object that became cyclic garbage is reclaimed at the next call, not kept."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class PauseTimer:
    """A ``gc.callbacks`` hook: each collection's generation and wall time, to ``observe``."""

    def __init__(
        self, observe: Callable[[int, float], None], clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._observe = observe
        self._clock = clock
        self._started: float | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
        elif self._started is not None:  # installed during a collection: its start was not seen
            self._observe(int(info["generation"]), self._clock() - self._started)
            self._started = None


def time_pauses(observe: Callable[[int, float], None]) -> PauseTimer:
    """Time every collection of this process from now on (``gc.callbacks.remove`` undoes it)."""
    timer = PauseTimer(observe)
    gc.callbacks.append(timer)
    return timer
