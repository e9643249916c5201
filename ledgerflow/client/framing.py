"""Pure: which topic an event goes to, its key and value (Kafka), or its JSON body (the edge)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.errors import ValidationError
from ledgerflow.topics import CONVERSATION_EVENTS, TOPIC_TYPES

EDGE_TYPES = TOPIC_TYPES[CONVERSATION_EVENTS]
"""The types ``POST /v1/events`` accepts; the others reach the log through their own operations."""


@dataclass(frozen=True, slots=True)
class KafkaRecord:
    topic: str
    key: bytes
    value: bytes


def base_topic(event_type: str) -> str:
    """The topic (without prefix) that carries ``event_type``."""
    for topic, types in TOPIC_TYPES.items():
        if event_type in types:
            return topic
    raise ValidationError(f"type: {event_type!r} is carried by no topic")


def kafka_record(event: Event, topic_prefix: str = "") -> KafkaRecord:
    """Keyed by subject (the partitioner then co-locates a conversation), single-object Avro framed."""
    return KafkaRecord(topic_prefix + base_topic(event.type), event.subject.encode(), codec.encode(event))


def edge_body(event: Event) -> dict[str, Any]:
    """The ``POST /v1/events`` body: the event's JSON without what the edge sets itself.

    ``producer`` is derived by the edge from the token, and the chain fields belong to the agents.
    ``event_id`` stays: the edge acknowledges a retry of the same id with the first position.
    """
    if event.type not in EDGE_TYPES:
        raise ValidationError(
            f"type: {event.type} cannot be published through the edge; "
            f"it takes {', '.join(sorted(EDGE_TYPES))} (use a kafka:// producer for the others)"
        )
    body = event.to_json()
    for name in ("producer", "sequence", "prev_hash", "hash"):
        body.pop(name)
    if body["trace_id"] is None:
        del body["trace_id"]
    return body
