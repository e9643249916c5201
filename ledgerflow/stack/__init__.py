"""The local Kafka (KRaft) and Redis of ``ledgerflow stack up``: ``manage`` runs them, ``kafka`` and
``redis`` describe each node, ``processes`` starts, watches and stops them."""

__all__ = ["kafka", "manage", "processes", "redis"]
