"""Decoding an input record: the one way a raw record of an input topic becomes an ``Event``.

1. Size first: nothing over ``MAX_INPUT_RECORD_BYTES`` is decoded (``record-too-large``;
   the record is dead-lettered by reference).
2. The codec, restricted to the record types the topic carries (it validates the envelope
   and the payload).
3. The key: the record's key must be the event's partition key.
Every failure raises ``DecodeError`` whose reason starts with its code.
"""

from __future__ import annotations

from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import Event, check_key
from ledgerflow.errors import DecodeError
from ledgerflow.limits import MAX_INPUT_RECORD_BYTES

__all__ = ["TOO_LARGE", "decode_input"]

TOO_LARGE = "record-too-large"


def decode_input(value: bytes | None, key: bytes | None, base_topic: str) -> Event:
    """The event in an input record of ``base_topic``, or DecodeError with the reason."""
    data = value or b""
    if len(data) > MAX_INPUT_RECORD_BYTES:
        raise DecodeError(
            f"{TOO_LARGE}: the value is {len(data)} bytes, over the {MAX_INPUT_RECORD_BYTES}-byte limit "
            "for a record an agent decodes; dead-lettered by reference, not decoded"
        )
    event = codec.decode(data, allowed_types=TOPIC_TYPES[base_topic])
    check_key(event, key)
    return event
