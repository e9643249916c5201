"""The chain hash of an ``Event`` without its JSON round trip: the hot path of linking and checking.

``chain.compute_hash(event.to_json(), prev_hash)`` walks the record three times (render the JSON
form, copy it as plain JSON, copy it again for orjson) before hashing. ``event_hash`` and
``link_event`` build the RFC 8785-ready body in one pass, with a renderer compiled per schema
version, and hash it with orjson (``canonical.canonical_json`` explains when orjson writes JCS
bytes). Anything unusual — a value of an unexpected type, a number JCS writes differently from
orjson, a time outside 2000..2200 — takes the generic path, so the result (hash or error) is
always the generic path's; a property test compares the two.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import orjson

from ledgerflow.contracts._avro_json import format_timestamp
from ledgerflow.contracts.avrobin import Source, kind_of
from ledgerflow.contracts.canonical import MAX_SAFE_INT
from ledgerflow.contracts.chain import (
    DECISION_TYPE,
    USAGE_TYPE,
    ZERO_HASH,
    ChainHead,
    check_hex,
    compute_hash,
    decision_chain_key,
    link,
    usage_chain_key,
)
from ledgerflow.contracts.events import MAX_OCCURRED_AT, MIN_OCCURRED_AT, Event
from ledgerflow.contracts.registry import SchemaRegistry, default_registry
from ledgerflow.errors import ValidationError

__all__ = ["event_chain_key", "event_hash", "follows", "link_event"]

Renderer = Callable[[dict[str, Any]], dict[str, Any]]


class _Generic(Exception):
    """This record takes the generic path."""


def event_hash(event: Event, prev_hash: str) -> str:
    """``compute_hash(event.to_json(), prev_hash)``: the hash ``event`` must carry."""
    try:
        body = _body(event)
    except _Generic:
        return compute_hash(event.to_json(), prev_hash)
    check_hex(prev_hash, "prev_hash")
    body["prev_hash"] = prev_hash
    return _digest(body)


def follows(event: Event, head: ChainHead | None) -> bool:
    """Whether ``event`` is the next record of the chain whose head is ``head`` (None: no record of
    it yet): sequence one past the head's (1 with ``ZERO_HASH`` first), ``prev_hash`` the head's
    hash, and ``hash`` the hash of its content. What a reader of its own log trusts, against
    records anyone with access to Kafka can append."""
    seq, prev, digest = event.sequence, event.prev_hash, event.hash
    if seq is None or prev is None or digest is None:
        return False
    if (seq, prev) != ((1, ZERO_HASH) if head is None else (head.sequence + 1, head.hash)):
        return False
    try:
        return event_hash(event, prev) == digest
    except ValidationError:
        return False


def link_event(event: Event, head: ChainHead | None) -> Event:
    """``event`` linked after ``head`` (None starts the chain): what ``chain.link`` gives its JSON."""
    try:
        body = _body(event)
    except _Generic:
        linked = link(event.to_json(), head)
        return event.with_chain(linked["sequence"], linked["prev_hash"], linked["hash"])
    if head is not None:
        key = event_chain_key(event)
        if key != head.key:
            why = (
                f"record chain key {key!r} is not the head's key {head.key!r}: pass the head of its own chain"
            )
            raise ValidationError(why)
    body["sequence"] = sequence = 1 if head is None else head.sequence + 1
    body["prev_hash"] = prev_hash = ZERO_HASH if head is None else head.hash
    return event.with_chain(sequence, prev_hash, _digest(body))


def _digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()


def event_chain_key(event: Event) -> str:
    """``chain.chain_key_of`` of the JSON form, for an event whose ids are strings."""
    if event.type == DECISION_TYPE:
        return decision_chain_key(event.tenant, event.subject)
    if event.type == USAGE_TYPE:
        return usage_chain_key(event.tenant, event.producer)
    return event.subject


def _body(event: Event) -> dict[str, Any]:
    """The JCS-ready JSON form of ``event`` without ``hash``; raises _Generic."""
    if event.type.__class__ is not str or event.schema_version.__class__ is not int:
        raise _Generic
    render = _renderers().get((event.type, event.schema_version))
    if render is None:
        raise _Generic
    event_id, type_name, tenant, subject, producer = (
        event.event_id,
        event.type,
        event.tenant,
        event.subject,
        event.producer,
    )
    trace_id, sequence, prev_hash, occurred_at = (
        event.trace_id,
        event.sequence,
        event.prev_hash,
        event.occurred_at,
    )
    if not (
        event_id.__class__ is str
        and tenant.__class__ is str
        and subject.__class__ is str
        and producer.__class__ is str
        and (trace_id is None or trace_id.__class__ is str)
        and (prev_hash is None or prev_hash.__class__ is str)
        and (sequence is None or (sequence.__class__ is int and -MAX_SAFE_INT <= sequence <= MAX_SAFE_INT))
        and occurred_at.__class__ is int
        and MIN_OCCURRED_AT <= occurred_at < MAX_OCCURRED_AT
    ):
        raise _Generic
    try:
        payload = render(event.payload.to_record())
    except Exception:  # whatever it is, the generic path raises it (or its own error first)
        raise _Generic from None
    return {
        "event_id": event_id,
        "type": type_name,
        "schema_version": event.schema_version,
        "tenant": tenant,
        "subject": subject,
        "occurred_at": format_timestamp(occurred_at),
        "producer": producer,
        "trace_id": trace_id,
        "sequence": sequence,
        "prev_hash": prev_hash,
        "payload": payload,
    }


_CACHE: dict[int, dict[tuple[str, int], Renderer]] = {}


def _renderers(registry: SchemaRegistry | None = None) -> dict[tuple[str, int], Renderer]:
    """(type, version) -> the compiled payload renderer, for every event schema."""
    registry = registry if registry is not None else default_registry()
    found = _CACHE.get(id(registry))
    if found is None:
        found = _CACHE[id(registry)] = {
            (e.type, e.version): compile_renderer(e.payload_schema())
            for e in registry.entries()
            if e.is_event
        }
    return found


# ---------------------------------------------------------------- renderer generation


def compile_renderer(schema: dict[str, Any]) -> Renderer:
    """A function: record dict of ``schema`` -> its JCS-ready JSON form (``_avro_json.to_json``
    with integral floats as ints), raising _Generic where that form needs the generic path."""
    src = Source()
    src.emit(0, "def render(r):")
    _emit_record(src, schema, 1, "r", "out")
    src.emit(1, "return out")
    names = {
        "Generic": _Generic,
        "fmt": format_timestamp,
        "SAFE": MAX_SAFE_INT,
        "LOW": MIN_OCCURRED_AT,
        "HIGH": MAX_OCCURRED_AT,
    }
    return src.build("render", f"<json renderer {schema.get('name', '?')}>", names)  # type: ignore[no-any-return]


def _emit_record(src: Source, schema: dict[str, Any], ind: int, record: str, target: str) -> None:
    src.emit(ind, f"if {record}.__class__ is not dict:")
    src.emit(ind + 1, "raise Generic")
    pairs = []
    for field in schema["fields"]:
        name = field["name"]
        if not name.isascii():  # JCS sorts by UTF-16 units, orjson by code points: equal for ASCII
            src.emit(ind, "raise Generic")
            return
        local = src.name("v")
        src.emit(ind, f"{local} = {record}[{name!r}]")
        _emit_value(src, field["type"], ind, local)
        pairs.append(f"{name!r}: {local}")
    src.emit(ind, f"{target} = {{{', '.join(pairs)}}}")


def _emit_value(src: Source, schema: Any, ind: int, local: str) -> None:
    """Check (and convert in place) the local ``local`` holding a value of ``schema``."""
    kind = kind_of(schema)
    if kind == "union":
        branches = [b for b in schema if b != "null"]
        if len(branches) != 1:
            src.emit(ind, "raise Generic")
            return
        src.emit(ind, f"if {local} is not None:")
        _emit_value(src, branches[0], ind + 1, local)
    elif isinstance(schema, dict) and schema.get("logicalType") == "timestamp-micros":
        src.emit(ind, f"if {local}.__class__ is not int or not LOW <= {local} < HIGH:")
        src.emit(ind + 1, "raise Generic")
        src.emit(ind, f"{local} = fmt({local})")
    elif kind in ("string", "enum"):
        _emit_class_check(src, ind, local, "str")
    elif kind == "boolean":
        _emit_class_check(src, ind, local, "bool")
    elif kind == "null":
        src.emit(ind, f"if {local} is not None:")
        src.emit(ind + 1, "raise Generic")
    elif kind in ("int", "long"):
        src.emit(ind, f"if {local}.__class__ is not int or not -SAFE <= {local} <= SAFE:")
        src.emit(ind + 1, "raise Generic")
    elif kind in ("float", "double"):
        _emit_number(src, ind, local)
    elif kind == "array":
        _emit_array(src, schema, ind, local)
    elif kind == "record":
        _emit_record(src, schema, ind, local, local)
    else:  # bytes, fixed, map: not in any event payload; the generic path knows what to do
        src.emit(ind, "raise Generic")


def _emit_class_check(src: Source, ind: int, local: str, cls: str) -> None:
    src.emit(ind, f"if {local}.__class__ is not {cls}:")
    src.emit(ind + 1, "raise Generic")


def _emit_number(src: Source, ind: int, local: str) -> None:
    # As canonical_json: an integral float within ±(2**53-1) is written as an int; other floats
    # only when orjson and JCS print them alike (1e-4 <= |x| < 1e15). An int stays an int.
    src.emit(ind, f"if {local}.__class__ is float:")
    src.emit(ind + 1, f"if {local}.is_integer() and -SAFE <= {local} <= SAFE:")
    src.emit(ind + 2, f"{local} = int({local})")
    src.emit(ind + 1, f"elif not 1e-4 <= abs({local}) < 1e15:")
    src.emit(ind + 2, "raise Generic")
    src.emit(ind, f"elif {local}.__class__ is not int or not -SAFE <= {local} <= SAFE:")
    src.emit(ind + 1, "raise Generic")


def _emit_array(src: Source, schema: dict[str, Any], ind: int, local: str) -> None:
    items, item = src.name("l"), src.name("x")
    src.emit(ind, f"if {local}.__class__ is not list:")
    src.emit(ind + 1, "raise Generic")
    src.emit(ind, f"{items} = []")
    src.emit(ind, f"for {item} in {local}:")
    _emit_value(src, schema["items"], ind + 1, item)
    src.emit(ind + 1, f"{items}.append({item})")
    src.emit(ind, f"{local} = {items}")
