"""Size limits, stated once and kept consistent from the edge down to the broker.

The chain, smallest first (every limit leaves room for the one below it to fit in the
one above):

- ``MAX_CONTENT_BYTES`` (64 KiB): a turn's ``content``, checked by envelope validation
  at the edge and again in the agents.
- ``MAX_BODY_BYTES`` (256 KiB): an HTTP request body; larger → 413 problem+json.
- ``MAX_INPUT_RECORD_BYTES`` (256 KiB): a record value an agent will decode. A larger
  record (only possible when a producer writes Kafka directly) is dead-lettered by
  reference without being decoded.
- ``MAX_DEAD_LETTER_PREFIX_BYTES`` (4 KiB): how much of a poison record's value a dead
  letter carries; a dead letter therefore always fits, whatever the input was.
- ``PRODUCER_MAX_REQUEST_BYTES`` (1 MiB) and the broker's ``message.max.bytes``
  (Kafka's default, 1 MiB + 12): what a producer may send at all. Every record
  ledgerflow itself writes is far below them.

A leaf: it imports nothing, so every layer (the contracts included) may state its checks
with these numbers.
"""

from __future__ import annotations

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_CONTENT_BYTES",
    "MAX_DEAD_LETTER_PREFIX_BYTES",
    "MAX_INPUT_RECORD_BYTES",
    "PRODUCER_MAX_REQUEST_BYTES",
]

MAX_CONTENT_BYTES = 64 * 1024
"""Largest MessageSubmitted.content, in bytes of UTF-8."""
MAX_BODY_BYTES = 256 * 1024
MAX_INPUT_RECORD_BYTES = 256 * 1024
MAX_DEAD_LETTER_PREFIX_BYTES = 4 * 1024
PRODUCER_MAX_REQUEST_BYTES = 1024 * 1024
