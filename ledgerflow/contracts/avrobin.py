"""Avro binary readers and writers compiled per schema: the codec's hot loop, in plain Python.

fastavro's schemaless reader and writer are generic: each call re-checks the schema, walks it
field by field and goes through a file-like object, ~7 µs a record even compiled. Our schemas
are fixed at start-up, so ``compile_reader``/``compile_writer`` turn each one into straight-line
Python source (one local per field, the one-byte varint inlined) and ``exec`` it once.

Same bytes as fastavro for every value that fits the schema (a property test compares them);
stricter on hostile input, never looser: a varint over 10 bytes or outside its int/long range,
a union or enum index outside the schema, a negative length, invalid UTF-8 or bytes after the
record raise ``AvroError`` (``truncated=True`` when the data ends early), where fastavro would
sometimes wrap around or take a negative index from the end.
"""

from __future__ import annotations

import copy
import keyword
import struct
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "AvroError",
    "Reader",
    "Resolver",
    "Writer",
    "compile_reader",
    "compile_resolver",
    "compile_writer",
]

Reader = Callable[[bytes, int], tuple[Any, int]]
"""(data, position) -> (value, position after it); raises AvroError."""
Writer = Callable[[Any], bytes]
"""value -> its Avro binary body; raises TypeError/ValueError/KeyError/OverflowError if it does
not fit the schema."""

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_DOUBLE = struct.Struct("<d")
_FLOAT = struct.Struct("<f")
_SMALL = tuple(bytes([(v << 1) if v >= 0 else ((-v << 1) - 1)]) for v in range(-64, 64))
"""Zigzag one-byte encodings of -64..63, at index v + 64."""


class AvroError(Exception):
    """The data is not a value of the schema; ``truncated``: it ends before the value does."""

    def __init__(self, why: str, *, truncated: bool = False) -> None:
        super().__init__(why)
        self.truncated = truncated


def read_long(data: bytes, pos: int, low: int = _LONG_MIN, high: int = _LONG_MAX) -> tuple[int, int]:
    """A zigzag varint at ``pos`` (the generated code inlines the one-byte case and catches the
    IndexError of data that ends inside it)."""
    b = data[pos]
    n = b & 0x7F
    shift = 7
    while b & 0x80:
        if shift > 63:
            raise AvroError(f"varint longer than 10 bytes at byte {pos}")
        pos += 1
        b = data[pos]
        n |= (b & 0x7F) << shift
        shift += 7
    value = (n >> 1) ^ -(n & 1)
    if not low <= value <= high:
        raise AvroError(f"varint {value} is out of range at byte {pos}")
    return value, pos + 1


def read_length(data: bytes, pos: int) -> tuple[int, int]:
    """The length of a string or bytes at ``pos``: a long that must not be negative."""
    size, pos = read_long(data, pos)
    if size < 0:
        raise AvroError(f"negative length {size} before byte {pos}")
    return size, pos


def _varint(value: int) -> bytes:
    """Zigzag varint of a long (the generated code looks up small values in tables)."""
    if not _LONG_MIN <= value <= _LONG_MAX:
        raise OverflowError(f"{value} does not fit in an Avro long")
    n = (value << 1) ^ (value >> 63)
    out = []
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_LENGTHS = tuple(_varint(n) for n in range(8192))
"""Varints of 0..8191, the lengths that fit in one or two bytes (hashes, ids, most texts)."""


def _check_bytes(value: Any) -> bytes:
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"{type(value).__name__} is not bytes")
    return bytes(value)


# ---------------------------------------------------------------- reader generation


class Source:
    """Lines of generated code with unique local names."""

    def __init__(self, builders: Mapping[str, Callable[..., Any]] | None = None) -> None:
        self.builders = builders or {}
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._count = 0

    def name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def constant(self, value: Any) -> str:
        name = self.name("k")
        self.constants[name] = value
        return name

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def build(self, function: str, label: str, names: dict[str, Any]) -> Any:
        """Compile the lines (which define ``function``) with ``names`` and the constants."""
        namespace = {**names, **self.constants}
        exec(compile("\n".join(self.lines), label, "exec"), namespace)
        return namespace[function]


def _emit_read_long(src: Source, ind: int, target: str, kind: str = "long") -> None:
    low, high = (_INT_MIN, _INT_MAX) if kind == "int" else (_LONG_MIN, _LONG_MAX)
    src.emit(ind, "b = d[p]")
    src.emit(ind, "if b < 128:")
    src.emit(ind + 1, f"{target} = (b >> 1) ^ -(b & 1)")
    src.emit(ind + 1, "p += 1")
    src.emit(ind, "else:")
    src.emit(ind + 1, f"{target}, p = read_long(d, p, {low}, {high})")


def _emit_read_bytes(src: Source, ind: int, target: str, text: bool) -> None:
    # A length is a long >= 0: one even byte below 128 is the common case; anything else
    # (longer, or negative, which ``read_length`` refuses) takes the call.
    src.emit(ind, "b = d[p]")
    src.emit(ind, "if b & 0x81:")
    src.emit(ind + 1, "e, p = read_length(d, p)")
    src.emit(ind, "else:")
    src.emit(ind + 1, "e = b >> 1")
    src.emit(ind + 1, "p += 1")
    src.emit(ind, "e += p")
    src.emit(ind, "if e > end:")
    src.emit(ind + 1, "raise AvroError(f'data ends inside a {e - p}-byte value', truncated=True)")
    src.emit(ind, f"{target} = d[p:e].decode()" if text else f"{target} = d[p:e]")
    src.emit(ind, "p = e")


def _emit_read(src: Source, schema: Any, ind: int, target: str) -> None:
    """Code that reads one value of ``schema`` at ``p`` into the local ``target``."""
    kind = kind_of(schema)
    if kind == "union":
        _emit_read_union(src, schema, ind, target)
    elif kind == "null":
        src.emit(ind, f"{target} = None")
    elif kind == "boolean":
        # As fastavro: any byte other than 0 is true (its writer only writes 0 and 1).
        src.emit(ind, f"{target} = d[p] != 0")
        src.emit(ind, "p += 1")
    elif kind in ("int", "long"):
        _emit_read_long(src, ind, target, kind)
    elif kind in ("float", "double"):
        fmt = src.constant(_DOUBLE if kind == "double" else _FLOAT)
        src.emit(ind, f"{target} = {fmt}.unpack_from(d, p)[0]")
        src.emit(ind, f"p += {8 if kind == 'double' else 4}")
    elif kind in ("string", "bytes"):
        _emit_read_bytes(src, ind, target, kind == "string")
    elif kind == "enum":
        # By the index's one-byte zigzag code (enums of up to 64 symbols, as ours).
        symbols = src.constant({2 * i: symbol for i, symbol in enumerate(schema["symbols"])})
        src.emit(ind, f"{target} = {symbols}.get(d[p])")
        src.emit(ind, f"if {target} is None:")
        src.emit(ind + 1, f"raise AvroError(f'enum index byte {{d[p]}} is not a symbol of {schema['name']}')")
        src.emit(ind, "p += 1")
    elif kind == "record":
        _emit_read_record(src, schema, ind, target)
    elif kind == "array":
        _emit_read_array(src, schema, ind, target)
    else:
        raise ValueError(f"Avro type {kind!r} is not supported by the compiled codec")


def _emit_read_record(src: Source, schema: dict[str, Any], ind: int, target: str) -> None:
    pairs = []
    for field in schema["fields"]:
        local = src.name("v")
        _emit_read(src, field["type"], ind, local)
        pairs.append((field["name"], local))
    builder = src.builders.get(schema.get("name", ""))
    if builder is not None and all(n.isidentifier() and not keyword.iskeyword(n) for n, _ in pairs):
        # Straight into the caller's class: no dict in between.
        call = ", ".join(f"{name}={local}" for name, local in pairs)
        src.emit(ind, f"{target} = {src.constant(builder)}({call})")
    else:
        src.emit(ind, f"{target} = {{{', '.join(f'{name!r}: {local}' for name, local in pairs)}}}")


def _emit_read_union(src: Source, schema: list[Any], ind: int, target: str) -> None:
    # An index is one byte for any union of up to 64 branches (Avro allows no more in
    # practice); an over-long encoding of a small index is refused rather than decoded.
    src.emit(ind, "b = d[p]")
    src.emit(ind, "p += 1")
    for i, branch in enumerate(schema):
        src.emit(ind, f"{'if' if i == 0 else 'elif'} b == {2 * i}:")
        _emit_read(src, branch, ind + 1, target)
    src.emit(ind, "else:")
    src.emit(ind + 1, f"raise AvroError(f'union index byte {{b}} is not one of 0..{len(schema) - 1}')")


def _emit_read_array(src: Source, schema: dict[str, Any], ind: int, target: str) -> None:
    count, item, skip = src.name("c"), src.name("v"), src.name("s")
    src.emit(ind, f"{target} = []")
    _emit_read_blocks(src, schema, ind, target, (count, item, skip))
    if src.builders:  # records read into classes hold sequences as tuples (they are frozen)
        src.emit(ind, f"{target} = tuple({target})")


def _emit_read_blocks(
    src: Source, schema: dict[str, Any], ind: int, target: str, names: tuple[str, ...]
) -> None:
    count, item, skip = names
    _emit_read_long(src, ind, count)
    src.emit(ind, f"while {count}:")
    src.emit(ind + 1, f"if {count} < 0:  # a negative count is followed by the block's byte size")
    src.emit(ind + 2, f"{count} = -{count}")
    _emit_read_long(src, ind + 2, skip)
    src.emit(ind + 1, f"for _ in range({count}):")
    _emit_read(src, schema["items"], ind + 2, item)
    src.emit(ind + 2, f"{target}.append({item})")
    _emit_read_long(src, ind + 1, count)


_READ_ERRORS = """\
    except IndexError:
        raise AvroError('data ends inside a value', truncated=True) from None
    except UnicodeDecodeError as exc:
        raise AvroError(f'a string is not UTF-8: {exc.reason}') from None
    except struct.error:
        raise AvroError('data ends inside a number', truncated=True) from None
    return out, p"""


def compile_reader(schema: Any, builders: Mapping[str, Callable[..., Any]] | None = None) -> Reader:
    """A reader of values of ``schema`` (a fastavro-parsed or plain schema without named refs).

    A record is read as a dict, or, when ``builders`` has its (full) name, as what that callable
    returns given the record's fields as keyword arguments; with builders, arrays read as tuples.
    """
    src = Source(builders)
    src.lines += ["def read(d, p):", "    end = len(d)", "    try:"]
    _emit_read(src, schema, 2, "out")
    src.lines += _READ_ERRORS.splitlines()
    names = {"read_long": read_long, "read_length": read_length, "AvroError": AvroError, "struct": struct}
    return src.build("read", f"<avro reader {_name_of(schema)}>", names)  # type: ignore[no-any-return]


# ---------------------------------------------------------------- writer generation


def _emit_write_long(src: Source, ind: int, value: str, kind: str = "long") -> None:
    low, high = (_INT_MIN, _INT_MAX) if kind == "int" else (_LONG_MIN, _LONG_MAX)
    # fastavro accepts ints and bools (an int subclass) for int/long fields; so do we.
    src.emit(ind, f"x = {value}")
    src.emit(ind, "if not isinstance(x, int):")
    src.emit(ind + 1, "raise TypeError(f'{type(x).__name__} is not an int')")
    src.emit(ind, "if -64 <= x < 64:")
    src.emit(ind + 1, "a(SMALL[x + 64])")
    src.emit(ind, f"elif {low} <= x <= {high}:")
    src.emit(ind + 1, "a(varint(x))")
    src.emit(ind, "else:")
    src.emit(ind + 1, f"raise OverflowError(f'{{x}} does not fit in an Avro {kind}')")


def _emit_write_length(src: Source, ind: int, value: str) -> None:
    """A length (an int >= 0): most take one of the precomputed one- or two-byte varints."""
    src.emit(ind, f"x = len({value})")
    src.emit(ind, f"a(LENGTHS[x] if x < {len(_LENGTHS)} else varint(x))")


def _emit_write(src: Source, schema: Any, ind: int, value: str) -> None:
    """Code that appends the bytes of ``value`` (an expression) of ``schema``."""
    kind = kind_of(schema)
    if kind in ("string", "bytes"):
        raw = src.name("b")
        src.emit(ind, f"{raw} = {value}.encode()" if kind == "string" else f"{raw} = check_bytes({value})")
        _emit_write_length(src, ind, raw)
        src.emit(ind, f"a({raw})")
    elif kind == "union":
        _emit_write_union(src, schema, ind, value)
    elif kind == "null":
        src.emit(ind, f"if {value} is not None:")
        src.emit(ind + 1, "raise TypeError('null expected')")
    elif kind == "boolean":
        src.emit(ind, f"a(b'\\x01' if {value} else b'\\x00')")
    elif kind in ("int", "long"):
        _emit_write_long(src, ind, value, kind)
    elif kind in ("float", "double"):
        fmt = src.constant(_DOUBLE if kind == "double" else _FLOAT)
        src.emit(ind, f"a({fmt}.pack({value}))")
    elif kind == "enum":
        codes = src.constant(
            {s: _SMALL[i + 64] if i < 64 else _varint(i) for i, s in enumerate(schema["symbols"])}
        )
        code, symbols = src.name("c"), src.constant(list(schema["symbols"]))
        src.emit(ind, f"{code} = {codes}.get({value})")
        src.emit(ind, f"if {code} is None:")  # the wording of fastavro, which the producers' errors carried
        src.emit(ind + 1, f"raise ValueError(repr({value}) + ' is not in list ' + repr({symbols}))")
        src.emit(ind, f"a({code})")
    elif kind == "record":
        record = src.name("r")
        src.emit(ind, f"{record} = {value}")
        for field in schema["fields"]:
            _emit_write(src, field["type"], ind, f"{record}[{field['name']!r}]")
    elif kind == "array":
        items, item = src.name("l"), src.name("v")
        src.emit(ind, f"{items} = {value}")
        src.emit(ind, f"if {items}:")
        _emit_write_length(src, ind + 1, items)
        src.emit(ind + 1, f"for {item} in {items}:")
        _emit_write(src, schema["items"], ind + 2, item)
        src.emit(ind, "a(b'\\x00')")
    else:
        raise ValueError(f"Avro type {kind!r} is not supported by the compiled codec")


def _emit_write_union(src: Source, schema: list[Any], ind: int, value: str) -> None:
    """Only [null, X] and [X, null]: the unions our schemas use (others: compile error)."""
    if len(schema) != 2 or "null" not in schema:
        raise ValueError(f"union {schema} is not [null, X]: not supported by the compiled codec")
    held = src.name("u")
    null_index = schema.index("null")
    other = schema[1 - null_index]
    src.emit(ind, f"{held} = {value}")
    src.emit(ind, f"if {held} is None:")
    src.emit(ind + 1, f"a({_SMALL[null_index + 64]!r})")
    src.emit(ind, "else:")
    src.emit(ind + 1, f"a({_SMALL[1 - null_index + 64]!r})")
    _emit_write(src, other, ind + 1, held)


def compile_writer(schema: Any) -> Writer:
    """A writer of values of ``schema`` (its unions must be [null, X])."""
    src = Source()
    src.emit(0, "def write(value):")
    src.emit(1, "out = []")
    src.emit(1, "a = out.append")
    _emit_write(src, schema, 1, "value")
    src.emit(1, "return b''.join(out)")
    names = {"SMALL": _SMALL, "LENGTHS": _LENGTHS, "varint": _varint, "check_bytes": _check_bytes}
    return src.build("write", f"<avro writer {_name_of(schema)}>", names)  # type: ignore[no-any-return]


def kind_of(schema: Any) -> str:
    """The Avro type name of ``schema``; ``union`` for a list of branches."""
    if isinstance(schema, list):
        return "union"
    return schema if isinstance(schema, str) else str(schema["type"])


def _name_of(schema: Any) -> str:
    return str(schema.get("name", "?")) if isinstance(schema, dict) else "?"


# ---------------------------------------------------------------- schema resolution

Resolver = Callable[[dict[str, Any]], dict[str, Any]]
"""A record read with a writer schema -> the same record in the reader schema's shape (in place)."""


def compile_resolver(writer: dict[str, Any], reader: dict[str, Any]) -> Resolver | None:
    """Avro resolution of a record written with ``writer`` to ``reader``, for the evolution our
    schemas use: fields added with a default, fields removed, nested records changed the same way.
    None when it needs more (a field's type changed): the caller resolves with fastavro then."""
    if writer.get("type") != "record" or reader.get("type") != "record":
        return None
    written = {f["name"]: f["type"] for f in writer["fields"]}
    wanted = {f["name"]: f for f in reader["fields"]}
    dropped = tuple(name for name in written if name not in wanted)
    added: list[tuple[str, Any]] = []
    nested: list[tuple[str, Resolver]] = []
    for name, field in wanted.items():
        if name not in written:
            if "default" not in field:
                return None
            added.append((name, field["default"]))
        elif _shape(written[name]) != _shape(field["type"]):
            inner = (
                compile_resolver(written[name], field["type"]) if isinstance(written[name], dict) else None
            )
            if inner is None:
                return None
            nested.append((name, inner))

    def resolve(record: dict[str, Any]) -> dict[str, Any]:
        for name in dropped:
            del record[name]
        for name, default in added:
            # Defaults are JSON values: only a list or a map needs a fresh copy per record.
            record[name] = copy.deepcopy(default) if isinstance(default, (list, dict)) else default
        for name, inner in nested:
            record[name] = inner(record[name])
        return record

    return resolve


def _shape(schema: Any) -> Any:
    """What decides the bytes and values of a schema: without docs, defaults and fastavro's keys."""
    if isinstance(schema, list):
        return [_shape(branch) for branch in schema]
    if isinstance(schema, dict):
        return {
            k: _shape(v) for k, v in schema.items() if k not in ("doc", "default") and not k.startswith("__")
        }
    return schema
