"""A tiny deterministic YAML emitter for JSON-like data (block style, JSON-quoted strings).

Enough for generated documents (docs/asyncapi.yaml) without a YAML library at runtime.
"""

from __future__ import annotations

import json
import re
from typing import Any

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_RESERVED = frozenset({"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"})


def dump(value: Any) -> str:
    """``value`` (dicts, lists, str, int, float, bool, None) as a YAML document."""
    return "\n".join(_lines(value, 0)) + "\n"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, (int, float)):
        return json.dumps(value)
    raise TypeError(f"cannot render {type(value).__name__} as YAML")


def _quote(text: str) -> str:
    """A double-quoted scalar: JSON escapes; non-BMP characters as \\UXXXXXXXX (YAML has no surrogates)."""
    quoted = json.dumps(text, ensure_ascii=False)
    return "".join(
        ch if 0x20 <= ord(ch) < 0x7F else f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}"
        for ch in quoted
    )


def _key(key: str) -> str:
    if _PLAIN_KEY.match(key) and key.lower() not in _RESERVED:
        return key
    return _quote(key)


def _is_leaf(value: Any) -> bool:
    return not isinstance(value, (dict, list)) or not value


def _leaf(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


def _lines(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if _is_leaf(value):
        return [pad + _leaf(value)]
    out: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if _is_leaf(item):
                out.append(f"{pad}{_key(str(key))}: {_leaf(item)}")
            else:
                out.append(f"{pad}{_key(str(key))}:")
                out.extend(_lines(item, indent + 2))
        return out
    for item in value:
        if _is_leaf(item):
            out.append(f"{pad}- {_leaf(item)}")
        else:
            nested = _lines(item, indent + 2)
            out.append(f"{pad}- {nested[0][indent + 2 :]}")
            out.extend(nested[1:])
    return out
