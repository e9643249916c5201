"""``ledgerflow audit``: replay every log, verify hash chains and sequences, re-derive every
decision bit for bit, fold ``training.audit`` checking each transition, rebuild the read
models into a scratch space and diff them with the live ones (docs/audit.md).

Pure checks: ``chains``, ``decisions``, ``training``, ``digests``, ``report``, ``progress``.
I/O: ``sources`` (Kafka), ``logchecks`` (drives the pure checks), ``projections`` (Redis),
``cli`` (``run_audit``, ``audit_cli``).
"""

__all__ = ["cli", "report"]
