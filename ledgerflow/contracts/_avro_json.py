"""Walk an Avro schema to check a JSON value against it, and to render a record as JSON.

Used at the HTTP edge only. JSON follows the Avro record with two conveniences:
a ``["null", X]`` union is the plain value or ``null`` (no ``{"X": ...}`` wrapper), and
``timestamp-micros`` is an RFC 3339 string ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ledgerflow.errors import ValidationError
from ledgerflow.quoting import quoted

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)
_ONE_MICRO = timedelta(microseconds=1)
_INT_RANGE = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def format_timestamp(micros: int) -> str:
    """Microseconds since the epoch (UTC) -> ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    moment = _NAIVE_EPOCH + timedelta(microseconds=micros)
    if moment.year >= 1000:  # isoformat is ~2x faster; strftime pads %Y to 4 digits only from 1000 on
        return moment.isoformat(timespec="microseconds") + "Z"
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str, field: str) -> int:
    """An ISO 8601 timestamp with a zone (``Z`` or an offset) -> microseconds since the epoch."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"{field}: {text[:40]!r} is not a timestamp; use YYYY-MM-DDTHH:MM:SS.ffffffZ"
        ) from None
    if moment.tzinfo is None:
        raise ValidationError(f"{field}: {text[:40]!r} has no time zone; end it with Z (UTC)")
    return (moment - _EPOCH) // _ONE_MICRO


def from_json(schema: Any, value: Any, path: str) -> Any:
    """Check ``value`` against ``schema``; return the Avro-ready value. Errors name ``path``."""
    if isinstance(schema, list):
        return _union(schema, value, path)
    if isinstance(schema, str):
        return _primitive(schema, value, path)
    kind = schema["type"]
    if schema.get("logicalType") == "timestamp-micros":
        if not isinstance(value, str):
            raise ValidationError(f"{path}: expected a timestamp string, got {_kind(value)}")
        return parse_timestamp(value, path)
    if kind == "record":
        return _record(schema, value, path)
    if kind == "enum":
        if value not in schema["symbols"]:
            allowed = "|".join(schema["symbols"])
            raise ValidationError(f"{path}: {quoted(value)} is not one of {allowed}")
        return value
    if kind == "array":
        if not isinstance(value, list):
            raise ValidationError(f"{path}: expected an array, got {_kind(value)}")
        return [from_json(schema["items"], item, f"{path}[{i}]") for i, item in enumerate(value)]
    return _primitive(kind, value, path)


def _union(schema: list[Any], value: Any, path: str) -> Any:
    if value is None:
        if "null" in schema:
            return None
        raise ValidationError(f"{path}: must not be null")
    branches = [branch for branch in schema if branch != "null"]
    if len(branches) != 1:
        raise ValidationError(f"{path}: unions other than [null, X] are not supported in JSON")
    return from_json(branches[0], value, path)


def _primitive(kind: str, value: Any, path: str) -> Any:
    if kind == "string":
        if isinstance(value, str):
            return value
    elif kind in _INT_RANGE:
        if isinstance(value, int) and not isinstance(value, bool):
            low, high = _INT_RANGE[kind]
            if not low <= value <= high:
                raise ValidationError(f"{path}: {value} does not fit in an Avro {kind}")
            return value
    elif kind in ("double", "float"):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == "boolean":
        if isinstance(value, bool):
            return value
    elif kind == "null":
        if value is None:
            return None
    else:
        raise ValidationError(f"{path}: Avro type {kind} is not accepted in JSON")
    raise ValidationError(f"{path}: expected {kind}, got {_kind(value)}")


def _record(schema: dict[str, Any], value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValidationError(f"{path}: expected an object, got {_kind(value)}")
    known = {field["name"] for field in schema["fields"]}
    extra = sorted(set(value) - known)
    if extra:
        raise ValidationError(
            f"{path}.{extra[0]}: unknown field; allowed fields are {', '.join(sorted(known))}"
        )
    out: dict[str, Any] = {}
    for field in schema["fields"]:
        name = field["name"]
        if name in value:
            out[name] = from_json(field["type"], value[name], f"{path}.{name}")
        elif "default" in field:
            out[name] = field["default"]
        else:
            raise ValidationError(f"{path}.{name}: required field is missing")
    return out


def to_json(schema: Any, value: Any) -> Any:
    """Render an Avro record value (as produced by ``to_record``) as JSON-ready data."""
    if value is None:
        return None
    if isinstance(schema, list):
        return to_json(next(b for b in schema if b != "null"), value)
    if isinstance(schema, str):
        return value
    if schema.get("logicalType") == "timestamp-micros":
        return format_timestamp(value)
    kind = schema["type"]
    if kind == "record":
        return {f["name"]: to_json(f["type"], value[f["name"]]) for f in schema["fields"]}
    if kind == "array":
        return [to_json(schema["items"], item) for item in value]
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
