"""Deterministic YAML for JSON-like data (generated documents such as docs/asyncapi.yaml), by PyYAML.

The style is fixed so the output stays byte-stable: block style, keys in insertion order,
lists indented under their key, every string double-quoted and ASCII-only (escapes for the
rest), keys plain when they read back as the same plain string (else double-quoted), no
line wrapping, ``null`` for None.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

__all__ = ["dump"]

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_STR_TAG = "tag:yaml.org,2002:str"


class _Key(str):
    """A mapping key: plain when it is safe, where a string value is always quoted."""

    __slots__ = ()


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)  # lists indented under their key


def _string(dumper: _Dumper, text: str) -> yaml.ScalarNode:
    return dumper.represent_scalar(_STR_TAG, text, style='"')


def _key(dumper: _Dumper, key: _Key) -> yaml.ScalarNode:
    text = str(key)
    plain = bool(_PLAIN_KEY.match(text)) and yaml.safe_load(text) == text
    return dumper.represent_scalar(_STR_TAG, text, style=None if plain else '"')


def _none(dumper: _Dumper, _: None) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:null", "null")


def _mapping(dumper: _Dumper, mapping: dict[Any, Any]) -> yaml.MappingNode:
    return dumper.represent_mapping("tag:yaml.org,2002:map", {_Key(k): v for k, v in mapping.items()})


_Dumper.add_representer(str, _string)
_Dumper.add_representer(_Key, _key)
_Dumper.add_representer(type(None), _none)
_Dumper.add_representer(dict, _mapping)


def dump(value: Any) -> str:
    """``value`` (dicts, lists, str, int, float, bool, None) as a YAML document."""
    text: str = yaml.dump(
        value,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=False,
        width=float("inf"),
    )
    return text
