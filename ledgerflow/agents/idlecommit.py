"""faust's stuck-commit check without its false alarm on a partition that was only idle.

Every 1.25 s faust's consumer checks each assigned partition (``verify_event_path`` in
``faust/transport/drivers/aiokafka.py``): when the partition has records beyond its fetch
position (highwater > position), its stream took an event recently, and the partition's last
commit (``tp_last_committed_at``, or the worker's start if none) is older than
``broker_commit_livelock_soft_timeout`` (300 s), it logs a multi-line ERROR: "Has not committed
TP(...) (last commit 37 minutes ago) … The commit handler background thread has stopped working
(report as bug)". faust stamps a partition only when it commits a new offset for it, and a
partition with no records has none to commit: one idle for more than 5 minutes (the training
and usage agents' partitions often are) raises that ERROR when traffic resumes, in the second
before its first commit — a false alarm, where the docs say normal operation logs nothing
above INFO.

A real stall is work left uncommitted: records acked but not committed (``_acked``), or
delivered to a stream and never acked (a stuck agent). So every second ``mark_idle`` stamps the
partitions that have neither as committed now: nothing to commit is up to date. The check then
measures how long the partition has had work to commit, which is what it means to measure; a
commit handler that stops with work pending, or an agent stuck on a record, still gets its
ERROR 300 s later. Raising ``broker_commit_livelock_soft_timeout`` instead would only delay the
false alarm (an idle hour is longer than any timeout) and the real one with it, and demoting the
log line cannot tell the two apart (both say "last commit N minutes ago").
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import faust
from faust.exceptions import ConsumerNotStarted
from faust.types import TP

EVERY_S = 1.0


def idle(assigned: Iterable[TP], acked: Mapping[TP, Sequence[int]], in_flight: Collection[TP]) -> list[TP]:
    """Pure: the ``assigned`` partitions with nothing to commit: no offset acked since their last
    commit (``acked``, faust's ``Consumer._acked``) and no record delivered but not acked
    (``in_flight``)."""
    return [tp for tp in assigned if not acked.get(tp) and tp not in in_flight]


def mark_idle(consumer: Any, assigned: Iterable[TP], now: float) -> list[TP]:
    """Stamp ``consumer``'s (faust's aiokafka ``Consumer``) idle partitions of ``assigned`` as
    committed at ``now`` (``time.monotonic``, faust's clock); return them."""
    stamps = consumer._thread.tp_last_committed_at
    in_flight = {message.tp for message in list(consumer._unacked_messages) if not message.acked}
    fresh = idle(assigned, consumer._acked, in_flight)
    for tp in fresh:
        stamps[tp] = now
    return fresh


def register(app: faust.App) -> None:
    @app.timer(interval=EVERY_S)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def idle_partitions_are_committed() -> None:
        consumer = app.consumer
        try:
            assigned = consumer.assignment()
        except ConsumerNotStarted:  # starting or stopping: faust checks nothing then either
            return
        mark_idle(consumer, assigned, time.monotonic())
