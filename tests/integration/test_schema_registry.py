"""The edge's read-only Schema Registry API, read by a stock client (confluent-kafka's
``SchemaRegistryClient``), and our records on the real topics decoded by confluent-kafka's
stock ``AvroDeserializer`` through that API: turns published through the edge, an older
schema version published straight to Kafka, and the policy agent's decisions."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, SerializationError

from ledgerflow.client import Producer
from ledgerflow.client.confluent import single_object_schema_id
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import ConversationStarted, MessageSubmitted
from ledgerflow.contracts.registry import default_registry
from ledgerflow.contracts.schema_ids import schema_id
from ledgerflow.kafka.logs import read_all
from tests.support.processes import Process

SUBJECT = "io.ledgerflow.MessageSubmitted"


def plain(value: Any) -> Any:
    """The stock deserializer's logical types (uuid, timestamp-micros) as our records hold them."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        delta = value - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def as_record(event: Event) -> dict[str, Any]:
    """Our decoded event as the Avro record of the version it was written with."""
    record = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "payload"}
    written = default_registry().get(event.type, event.schema_version).payload_schema()
    payload = event.payload.to_record()
    record["payload"] = {f["name"]: payload[f["name"]] for f in written["fields"]}
    return record


def test_a_stock_registry_client_reads_subjects_versions_and_ids(edge: str) -> None:
    client = SchemaRegistryClient({"url": f"{edge}/registry"})
    registry = default_registry()
    assert client.get_subjects() == sorted(f"io.ledgerflow.{name}" for name in registry.versions)
    assert client.get_versions(SUBJECT) == [1, 2]
    latest = client.get_latest_version(SUBJECT)
    v1 = registry.get("MessageSubmitted", 1)
    assert latest.version == 2 and latest.schema_id == schema_id(
        registry.latest("MessageSubmitted").fingerprint
    )
    by_id = client.get_schema(schema_id(v1.fingerprint))
    assert json.loads(by_id.schema_str) == v1.schema  # the .avsc file itself, logical types and docs included
    found = client.lookup_schema(SUBJECT, Schema(json.dumps(v1.schema), "AVRO"))
    assert (found.version, found.schema_id) == (1, schema_id(v1.fingerprint))
    assert client.get_compatibility() == "FULL" and client.get_schema_types() == ["AVRO"]
    # Hostile: what a stock client asks for and we do not have.
    for call, code in (
        (lambda: client.get_versions("io.ledgerflow.Nope"), 40401),
        (lambda: client.get_version(SUBJECT, 3), 40402),
        (lambda: client.get_schema(1), 40403),
        (lambda: client.lookup_schema(SUBJECT, Schema('{"type":"string"}', "AVRO")), 40403),
        (lambda: client.lookup_schema(SUBJECT, Schema('{"type":"record"}', "AVRO")), 42201),
        (lambda: client.register_schema(SUBJECT, Schema('{"type":"string"}', "AVRO")), 405),
    ):
        with pytest.raises(SchemaRegistryError) as refused:
            call()
        assert code in (refused.value.error_code, refused.value.http_status_code), refused.value


def test_the_registry_needs_no_token_answers_problems_with_registry_codes_and_writes_nothing(
    edge: str,
) -> None:
    bad_version = httpx.get(f"{edge}/registry/subjects/{SUBJECT}/versions/x", timeout=5)
    assert bad_version.status_code == 422 and bad_version.json()["error_code"] == 42202
    assert bad_version.headers["content-type"] == "application/problem+json"
    for path in (
        "/registry/schemas/ids/abc",
        "/registry/schemas/ids/99999999999999999999",
        "/registry/schemas/ids/-1",
    ):
        missing = httpx.get(edge + path, timeout=5)
        assert missing.status_code == 404 and missing.json()["error_code"] == 40403, path
    assert httpx.delete(f"{edge}/registry/subjects/{SUBJECT}", timeout=5).status_code == 405
    assert httpx.put(f"{edge}/registry/config", json={"compatibility": "NONE"}, timeout=5).status_code == 405
    ok = httpx.get(f"{edge}/registry/subjects/{SUBJECT}/versions/latest/schema", timeout=5)
    assert ok.headers["content-type"] == "application/vnd.schemaregistry.v1+json"
    assert ok.json() == default_registry().latest("MessageSubmitted").schema


def test_stock_avro_deserializer_decodes_the_records_on_our_topics(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:  # type: ignore[no-untyped-def]
    tenant = f"t{uuid.uuid4().hex[:8]}"
    conv = f"c-{uuid.uuid4().hex[:8]}"
    with Producer(edge, token=tokens(tenant, "producer")) as through_edge:
        through_edge.publish(ConversationStarted("bo", "slm-1"), subject=conv)
        through_edge.publish(
            MessageSubmitted("t1", "user", "card 4111 1111 1111 1111", "slm-1"), subject=conv
        )
    with Producer(
        f"kafka://{settings.kafka_bootstrap}", tenant=tenant, topic_prefix=settings.topic_prefix
    ) as p:
        old = dataclasses.replace(
            p.event(MessageSubmitted("t2", "user", "hi", "slm-1"), subject=conv), schema_version=1
        )
        p.publish_events([old])
    deadline = time.monotonic() + 30
    while len(decisions := asyncio.run(read_all(settings, settings.topic("policy.decisions")))) < 2:
        assert time.monotonic() < deadline, "the policy agent decided nothing in 30 s"
        time.sleep(0.5)
    events = asyncio.run(read_all(settings, settings.topic("conversation.events")))
    deserialize = AvroDeserializer(
        SchemaRegistryClient({"url": f"{edge}/registry"}),
        conf={"schema.id.deserializer": single_object_schema_id},
    )
    seen = set()
    for record in [*events, *decisions]:
        assert record.value is not None
        stock = deserialize(record.value, SerializationContext(record.topic, MessageField.VALUE))
        ours = codec.decode(record.value)
        assert plain(stock) == as_record(ours), ours.type
        seen.add((ours.type, ours.schema_version))
    assert seen == {
        ("ConversationStarted", 1),
        ("MessageSubmitted", 2),
        ("MessageSubmitted", 1),
        ("PolicyDecision", 1),
    }
    # Hostile: a value in Confluent's own framing, and a fingerprint the registry does not know.
    ctx = SerializationContext(settings.topic("conversation.events"), MessageField.VALUE)
    with pytest.raises((SerializationError, ValueError), match="not-single-object"):
        deserialize(b"\x00\x00\x00\x00\x01" + events[0].value[10:], ctx)  # type: ignore[index]
    with pytest.raises(SchemaRegistryError) as unknown:
        deserialize(b"\xc3\x01" + b"\x7f" * 8 + events[0].value[10:], ctx)  # type: ignore[index]
    assert unknown.value.error_code == 40403
