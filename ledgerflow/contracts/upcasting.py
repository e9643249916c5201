"""Upgrading records written with an older schema version to the newest payload shape.

Two steps per version: *structural* (fields added in the newer version get their schema
default; removed fields are dropped) — done by Avro schema resolution in the codec and by
:func:`upcast_payload` for JSON — then *semantic*: ``UPCASTERS[(type, v)]`` for each step
v -> v+1, for meaning that resolution cannot supply.

Rule: an upcaster only fills fields the old version lacks. ``Event.to_json()`` renders the
fields of the version the event was written with, so hashes over old records stay valid.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any

from ledgerflow.contracts.registry import SchemaRegistry

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Takes and returns a full record dict (envelope fields plus ``payload``; a DeadLetter has
no envelope: its record dict is the letter itself)."""


def _message_submitted_v1_to_v2(record: dict[str, Any]) -> dict[str, Any]:
    """v1 producers could not declare a language: it is unknown (null), never guessed."""
    record["payload"]["language"] = None
    return record


def _dead_letter_v1_to_v2(record: dict[str, Any]) -> dict[str, Any]:
    """v1 letters always held the whole value: its digest and size follow from it."""
    value = record["value"]
    record["value_sha256"] = hashlib.sha256(value).hexdigest()
    record["value_size"] = len(value)
    return record


UPCASTERS: dict[tuple[str, int], Upcaster] = {
    ("MessageSubmitted", 1): _message_submitted_v1_to_v2,
    ("DeadLetter", 1): _dead_letter_v1_to_v2,
}
"""(type, from_version) -> function upgrading a record from that version to the next."""


def upcast_steps(
    type_name: str, version: int, newest: int, upcasters: Mapping[tuple[str, int], Upcaster]
) -> tuple[Upcaster, ...]:
    """The upcasters to run, in order, for a record of ``version``."""
    return tuple(upcasters[(type_name, v)] for v in range(version, newest) if (type_name, v) in upcasters)


def upcast_payload(
    registry: SchemaRegistry,
    type_name: str,
    version: int,
    record: dict[str, Any],
    upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
) -> dict[str, Any]:
    """A full record of ``version`` (JSON path) -> the newest payload shape."""
    newest = registry.latest(type_name)
    if version == newest.version:
        return record
    payload = record["payload"]
    record["payload"] = {
        f["name"]: payload.get(f["name"], f.get("default")) for f in newest.payload_schema()["fields"]
    }
    for step in upcast_steps(type_name, version, newest.version, upcasters):
        record = step(record)
    return record
