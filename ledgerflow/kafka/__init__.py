"""Adapters to Kafka that the worker, the edge, the audit and the tools share.

``reference``: the rule packs and training states every process reads in full;
``deadletters``: reading ``<topic>.dlq`` back (the scan the ``dlq`` tool and the audit use).
"""
