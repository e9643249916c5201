"""Generate the AsyncAPI 3.0 description of every topic from the schema set.

    python -m ledgerflow.contracts.asyncapi > docs/asyncapi.yaml

A unit test checks that the checked-in file equals :func:`render`.
"""

from __future__ import annotations

import sys
from typing import Any

from ledgerflow.contracts import _yaml
from ledgerflow.contracts.registry import SchemaEntry, default_registry
from ledgerflow.contracts.topics import CONTRACTS
from ledgerflow.topics import DLQ_TOPICS, TOPICS, dlq_of

AVRO_FORMAT = "application/vnd.apache.avro+json;version=1.9.0"
CONTENT_TYPE = "avro/binary"
_KAFKA_BINDING = "0.5.0"


def _channel_id(topic: str) -> str:
    head, *rest = topic.replace(".", "_").split("_")
    return head + "".join(part.capitalize() for part in rest)


def _message_id(entry: SchemaEntry) -> str:
    return f"{entry.type}.v{entry.version}"


def _message(entry: SchemaEntry, key: str) -> dict[str, Any]:
    return {
        "name": entry.type,
        "title": f"{entry.type} v{entry.version}",
        "summary": entry.schema.get("doc", entry.type),
        "description": (
            f"Avro single-object encoding: c301 | {entry.fingerprint_hex} | body. "
            f"Schema file: schemas/{entry.file_name}."
        ),
        "contentType": CONTENT_TYPE,
        "payload": {"schemaFormat": AVRO_FORMAT, "schema": entry.schema},
        "bindings": {
            "kafka": {
                "key": {"type": "string", "description": key},
                "bindingVersion": _KAFKA_BINDING,
            }
        },
        "x-fingerprint": entry.fingerprint_hex,
    }


def _channel(
    address: str, description: str, configs: dict[str, str], partitions: int, message_ids: list[str]
) -> dict[str, Any]:
    return {
        "address": address,
        "description": description + " Actual name: LEDGERFLOW_TOPIC_PREFIX + address.",
        "messages": {mid: {"$ref": f"#/components/messages/{mid}"} for mid in message_ids},
        "bindings": {
            "kafka": {
                "topic": address,
                "partitions": partitions,
                "topicConfiguration": {
                    "cleanup.policy": [configs.get("cleanup.policy", "delete")],
                    **({"retention.ms": int(configs["retention.ms"])} if "retention.ms" in configs else {}),
                },
                "bindingVersion": _KAFKA_BINDING,
            }
        },
    }


def document() -> dict[str, Any]:
    """The AsyncAPI document as data."""
    registry = default_registry()
    layout = {spec.base: spec for spec in TOPICS + DLQ_TOPICS}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    letter_ids = []
    for dead_letter in registry.versions["DeadLetter"]:
        messages[_message_id(dead_letter)] = _message(dead_letter, "the original record's key")
        letter_ids.append(_message_id(dead_letter))
    for contract in CONTRACTS:
        ids = []
        for type_name in sorted(contract.types):
            for entry in registry.versions[type_name]:
                messages[_message_id(entry)] = _message(entry, contract.key)
                ids.append(_message_id(entry))
        spec = layout[contract.name]
        cid = _channel_id(contract.name)
        channels[cid] = _channel(
            contract.name,
            f"{contract.description} Key: {contract.key}. Written by: {contract.written_by}.",
            spec.configs,
            spec.partitions,
            ids,
        )
        dlq = layout[dlq_of(contract.name)]
        channels[cid + "Dlq"] = _channel(
            dlq.base,
            f"Records of {contract.name} that could not be processed, with the reason.",
            dlq.configs,
            dlq.partitions,
            letter_ids,
        )
        for action, who in (("send", contract.written_by), ("receive", "ledgerflow agents and projectors")):
            operations[f"{action}{cid[0].upper()}{cid[1:]}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{cid}"},
                "summary": f"{'Written' if action == 'send' else 'Read'} by {who}.",
                "messages": [{"$ref": f"#/channels/{cid}/messages/{mid}"} for mid in ids],
            }
        operations[f"send{cid[0].upper()}{cid[1:]}Dlq"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{cid}Dlq"},
            "summary": "Written by any agent that gives up on a record.",
            "messages": [{"$ref": f"#/channels/{cid}Dlq/messages/{mid}"} for mid in letter_ids],
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ledgerflow event contracts",
            "version": "1.0.0",
            "description": (
                "Every topic ledgerflow reads or writes. Values are Avro single-object "
                "encoded (magic c301, 8-byte little-endian CRC-64-AVRO fingerprint of the "
                "writer schema, binary body); the schemas are the files in schemas/. "
                "Generated by `python -m ledgerflow.contracts.asyncapi`; see docs/contracts.md."
            ),
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "local": {
                "host": "127.0.0.1:19092",
                "protocol": "kafka",
                "description": (
                    "The local stack (`ledgerflow stack up`); set LEDGERFLOW_KAFKA_BOOTSTRAP for others."
                ),
            }
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def render() -> str:
    """The AsyncAPI document as YAML (the content of docs/asyncapi.yaml)."""
    return "# Generated by `python -m ledgerflow.contracts.asyncapi`; do not edit.\n" + _yaml.dump(document())


if __name__ == "__main__":
    sys.stdout.write(render())
