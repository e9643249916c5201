"""Adapters to Kafka that the worker, the edge, the audit and the tools share.

``admin``: create our topics, a produce/consume round trip, partition counts and committed offsets;
``logs``: read a topic (or a partition's offset range) back as raw records;
``reference``: the rule packs and training states every process reads in full;
``batches``: producing records as one record batch per partition;
``deadletters``: reading ``<topic>.dlq`` back (the scan the ``dlq`` tool and the audit use).
"""

__all__ = ["admin", "batches", "deadletters", "logs", "reference"]
