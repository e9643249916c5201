"""Decode ledgerflow's records with stock Confluent deserializers (confluent-kafka's ``AvroDeserializer``).

Our values are Avro single-object encoded (``c3 01 | fingerprint | body``), not Confluent's
``00 | schema id | body``. Confluent's Python deserializers take a ``schema.id.deserializer``
that reads the schema reference from the value; this one reads our header and names the
schema by the id the edge's registry API (``/registry``) gives it, so records already on our
topics decode with no re-producing::

    registry = SchemaRegistryClient({"url": "http://127.0.0.1:8700/registry"})
    decode = AvroDeserializer(registry, conf={"schema.id.deserializer": single_object_schema_id})
    record = decode(value, SerializationContext(topic, MessageField.VALUE))

No import of confluent-kafka here: it is the user's dependency, not ours.
"""

from __future__ import annotations

import io
from typing import Any, Protocol

from ledgerflow.contracts.schema_ids import HEADER_BYTES, schema_id_of_record
from ledgerflow.errors import DecodeError


class SchemaIdSlot(Protocol):
    """confluent_kafka.schema_registry.SchemaId: the deserializer fills ``id``."""

    id: int | None


def single_object_schema_id(payload: bytes, ctx: Any, schema_id: SchemaIdSlot) -> io.BytesIO:
    """Set ``schema_id.id`` from the single-object header; the Avro body follows.

    Raises ``ValueError`` (what Confluent's deserializers expect of a bad frame) for a value
    that is not single-object encoded, e.g. one written by a Confluent serializer.
    """
    try:
        schema_id.id = schema_id_of_record(payload)
    except DecodeError as exc:
        raise ValueError(exc.reason) from None
    return io.BytesIO(payload[HEADER_BYTES:])
