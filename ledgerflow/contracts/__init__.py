"""Event contracts: Avro schemas (``schemas/``), the ``Event`` envelope, the wire codec.

See docs/contracts.md. Import from the submodules:
``ledgerflow.contracts.events`` (Event, new_event, validate_envelope),
``ledgerflow.contracts.payloads`` (one dataclass per event type, DeadLetter),
``ledgerflow.contracts.codec`` (encode, decode, dead letters, TOPIC_TYPES),
``ledgerflow.contracts.registry`` (schema set and fingerprints).
"""

from __future__ import annotations

__all__ = ["chain", "codec", "events", "inputs", "payloads", "registry"]
