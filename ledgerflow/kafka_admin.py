"""Old path of :mod:`ledgerflow.kafka.admin` (the Kafka helpers now live in one subpackage).

Kept only while the agents being rewritten for throughput (policy, projector, runner, output)
still import this path; delete it once nothing does (``grep -rn ledgerflow.kafka_admin``).
"""

from __future__ import annotations

from ledgerflow.kafka.admin import (
    HEALTH_TOPIC,
    committed_offsets,
    ensure_topics,
    partition_counts,
    round_trip,
)

__all__ = ["HEALTH_TOPIC", "committed_offsets", "ensure_topics", "partition_counts", "round_trip"]
