"""Metrics of the projector's dependency on Redis and of what it refuses to project."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REDIS_UP = Gauge("ledgerflow_projector_redis_up", "1 while the projector reaches Redis, 0 while it backs off")
REDIS_RETRIES = Counter(
    "ledgerflow_projector_redis_retries_total", "Redis calls of the projector retried after a failure"
)
REDIS_OUTAGES = Counter(
    "ledgerflow_projector_redis_outages_total", "Times the projector lost Redis and backed off"
)
RESTORES = Counter(
    "ledgerflow_projector_restores_total",
    "Replays of the logs into a read-model space found incomplete (new or flushed Redis)",
)
QUARANTINED = Counter(
    "ledgerflow_projector_quarantined_total",
    "Decisions and training outcomes kept out of the read models because they do not verify",
    ["reason"],
)
DEDUPED = Counter(
    "ledgerflow_projector_duplicates_total",
    "Records not counted again: their event (or a decision's input) was already projected",
)
REDIS_UP.set(1)
MISROUTED_TURNS = Counter(
    "ledgerflow_projector_misrouted_turns_total",
    "Turns kept out of the read models because they are not in their conversation's partition",
)
