"""The compiled Avro readers and writers against fastavro: the same bytes and values for every
value of every schema, never looser on hostile bytes, and the same schema resolution."""

from __future__ import annotations

import functools
import io
import json
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledgerflow.contracts.avrobin import (
    AvroError,
    compile_reader,
    compile_resolver,
    compile_writer,
    read_long,
)
from ledgerflow.contracts.registry import SchemaEntry, default_registry

ENTRIES = default_registry().entries()
IDS = [e.file_name for e in ENTRIES]
OLDER = [e for e in ENTRIES if e is not default_registry().latest(e.type)]
PROPERTY = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _fastavro_bytes(entry: SchemaEntry, value: Any) -> bytes:
    out = io.BytesIO()
    schemaless_writer(out, entry.wire, value)
    return out.getvalue()


def _fastavro_read(entry: SchemaEntry, data: bytes, reader: Any = None) -> tuple[Any, int]:
    body = io.BytesIO(data)
    value = schemaless_reader(body, entry.wire, reader)
    return value, body.tell()


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_same_bytes_and_values_as_fastavro(entry: SchemaEntry, data: st.DataObject, strategies) -> None:
    value = data.draw(strategies["value"](entry.schema))
    expected = _fastavro_bytes(entry, value)
    assert compile_writer(entry.wire)(value) == expected
    assert compile_reader(entry.wire)(expected, 0) == _fastavro_read(entry, expected)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
@PROPERTY
@given(data=st.data())
def test_never_looser_than_fastavro_on_damaged_bytes(
    entry: SchemaEntry, data: st.DataObject, strategies
) -> None:
    """Whatever the compiled reader accepts, fastavro reads the same from (cut, flipped, spliced)."""
    good = _fastavro_bytes(entry, data.draw(strategies["value"](entry.schema)))
    at = data.draw(st.integers(0, len(good)))
    damage = data.draw(st.sampled_from(["cut", "flip", "insert", "random"]))
    if damage == "cut":
        bad = good[:at]
    elif damage == "flip":
        bad = good[:at] + bytes([data.draw(st.integers(0, 255))]) + good[at + 1 :]
    elif damage == "insert":
        bad = good[:at] + data.draw(st.binary(min_size=1, max_size=4)) + good[at:]
    else:
        bad = data.draw(st.binary(max_size=64))
    try:
        ours = compile_reader(entry.wire)(bad, 0)
    except AvroError:
        return
    # repr: a flipped byte can make a double NaN, and NaN != NaN (two equal reads compared unequal).
    assert repr(ours) == repr(_fastavro_read(entry, bad))


@pytest.mark.parametrize("entry", OLDER, ids=[e.file_name for e in OLDER])
@PROPERTY
@given(data=st.data())
def test_resolution_equals_fastavro_resolution(entry: SchemaEntry, data: st.DataObject, strategies) -> None:
    newest = default_registry().latest(entry.type)
    resolve = compile_resolver(entry.wire, newest.wire)
    assert resolve is not None  # our schemas only add fields with defaults
    wire = _fastavro_bytes(entry, data.draw(strategies["value"](entry.schema)))
    record, _ = compile_reader(entry.wire)(wire, 0)
    assert resolve(record) == _fastavro_read(entry, wire, newest.wire)[0]


def test_a_changed_field_type_is_left_to_fastavro() -> None:
    writer = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    reader = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}
    assert compile_resolver(writer, reader) is None
    added = {"type": "record", "name": "R", "fields": [*writer["fields"], {"name": "b", "type": "int"}]}
    assert compile_resolver(writer, added) is None  # an added field without a default


_RECORD = {
    "type": "record",
    "name": "R",
    "fields": [
        {"name": "s", "type": "string"},
        {"name": "i", "type": "int"},
        {"name": "u", "type": ["null", "string"]},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["a", "b"]}},
        {"name": "l", "type": {"type": "array", "items": "long"}},
    ],
}
_GOOD = compile_writer(_RECORD)({"s": "hé", "i": 5, "u": "x", "e": "b", "l": [1, 2]})


@pytest.mark.parametrize(
    ("data", "truncated"),
    [
        (b"\x05", False),  # negative string length
        (b"\x7e" + b"ab", True),  # a 63-byte string in 2 bytes
        (b"\x04\xff\xfe", False),  # not UTF-8
        (b"\x00" + b"\xff" * 10 + b"\x01", False),  # an 11-byte varint
        (b"\x00\xfe\xff\xff\xff\x1f", False),  # an int beyond 2**31 - 1
        (b"\x00\x02\x01", False),  # union index -1 (fastavro takes the last branch)
        (b"\x00\x02\x80\x00", False),  # union index 0, over-long
        (b"\x00\x02\x00\x04", False),  # enum index 2 of 2 symbols
        (b"\x00\x02\x00\x02\x04\x02", True),  # an array ends early
        (b"\x00\x02\x00\x02\x01\xff\xff", True),  # a block size that ends early
        (b"\x00\x02\x00\x02\x80", True),  # the data ends inside the array's count
        (b"", True),
    ],
)
def test_hostile_bytes_are_refused_with_a_reason(data: bytes, truncated: bool) -> None:
    with pytest.raises(AvroError) as refused:
        compile_reader(_RECORD)(data, 0)
    assert refused.value.truncated is truncated


def test_a_negative_block_count_reads_its_items() -> None:
    # count -2, block size 2, items 1 and 2, end
    data = b"\x00\x02\x00\x02\x03\x04\x02\x04\x00"
    assert compile_reader(_RECORD)(data, 0) == (
        {"s": "", "i": 1, "u": None, "e": "b", "l": [1, 2]},
        len(data),
    )


def test_reading_stops_at_the_record_end() -> None:
    assert compile_reader(_RECORD)(_GOOD + b"rest", 0) == (
        {"s": "hé", "i": 5, "u": "x", "e": "b", "l": [1, 2]},
        len(_GOOD),
    )


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"s": 1, "i": 5, "u": None, "e": "a", "l": []}, AttributeError),
        ({"s": "x", "i": "5", "u": None, "e": "a", "l": []}, TypeError),
        ({"s": "x", "i": 2**31, "u": None, "e": "a", "l": []}, OverflowError),
        ({"s": "x", "i": 1, "u": 7, "e": "a", "l": []}, AttributeError),
        ({"s": "x", "i": 1, "u": None, "e": "c", "l": []}, ValueError),
        ({"s": "x", "i": 1, "u": None, "e": "a", "l": [2**63]}, OverflowError),
        ({"s": "\ud800", "i": 1, "u": None, "e": "a", "l": []}, UnicodeEncodeError),
        ({"i": 1, "u": None, "e": "a", "l": []}, KeyError),
    ],
)
def test_values_that_do_not_fit_are_refused(value: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        compile_writer(_RECORD)(value)


def test_an_unknown_enum_symbol_is_named_with_the_symbols_it_may_be() -> None:
    # The producers' one-line errors carry this message (fastavro's wording).
    with pytest.raises(ValueError, match=r"^'c' is not in list \['a', 'b'\]$"):
        compile_writer(_RECORD)({"s": "x", "i": 1, "u": None, "e": "c", "l": []})


@given(st.integers(-(2**63), 2**63 - 1))
def test_longs_round_trip(value: int) -> None:
    writer = compile_writer("long")
    assert read_long(writer(value), 0) == (value, len(writer(value)))


def test_a_change_the_compiled_resolver_does_not_cover_is_resolved_by_fastavro() -> None:
    from ledgerflow.contracts.codec import _plan
    from ledgerflow.contracts.registry import load_entry

    def entry(version: int, kind: str) -> SchemaEntry:
        fields = [{"name": "n", "type": kind}]
        schema = {"type": "record", "name": "Thing", "namespace": "io.ledgerflow", "fields": fields}
        return load_entry(f"Thing.v{version}.avsc", json.dumps(schema))

    old, new = entry(1, "int"), entry(2, "long")  # Avro promotes int to long on resolution
    plan = _plan(old, new, ())
    assert plan.resolver is None and plan.fallback is new.wire
    data = b"\xc3\x01" + old.fingerprint + b"\x06"
    assert plan.resolve(data, {"n": 3}) == {"n": 3}


EVENT_ENTRIES = [e for e in ENTRIES if e.is_event]


@pytest.mark.parametrize("entry", EVENT_ENTRIES, ids=[e.file_name for e in EVENT_ENTRIES])
@PROPERTY
@given(data=st.data())
def test_reading_straight_into_the_classes_equals_the_dict_path(
    entry: SchemaEntry, data: st.DataObject, strategies
) -> None:
    """The codec reads into Event and payload classes directly; the dict path (fastavro-shaped
    record, resolution, upcasters, ``from_record``) decodes the same bytes to the same result."""
    from ledgerflow.contracts.codec import MAGIC, Codec, default_codec
    from ledgerflow.errors import DecodeError

    record = data.draw(strategies["value"](entry.schema) | strategies["event_record"](entry))
    wire = MAGIC + entry.fingerprint + _fastavro_bytes(entry, record)
    if data.draw(st.booleans()):
        at = data.draw(st.integers(10, len(wire) - 1))
        wire = wire[:at] + bytes([data.draw(st.integers(0, 255))]) + wire[at + 1 :]

    def outcome(codec: Codec) -> Any:
        try:
            return codec.decode(wire)
        except DecodeError as exc:
            return exc.reason

    # repr: a flipped byte can make a double NaN, and NaN != NaN (two equal decodes compared unequal).
    assert repr(outcome(default_codec())) == repr(outcome(_dict_path_codec(Codec)))


@functools.cache
def _dict_path_codec(codec_class: Any) -> Any:
    return codec_class(default_registry(), direct=False)
