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
"""

from __future__ import annotations

import gc

__all__ = ["YOUNG", "tune"]

YOUNG = 5000
"""Container allocations between two collections of the youngest generation (CPython: 700)."""


def tune() -> None:
    """Collect the youngest generation every ``YOUNG`` allocations; the others as by default."""
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, oldest)
