from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.contracts import _yaml
from ledgerflow.contracts.asyncapi import document, render
from ledgerflow.contracts.registry import default_registry

CHECKED_IN = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.yaml"


def test_checked_in_asyncapi_is_what_render_produces() -> None:
    assert CHECKED_IN.read_text(encoding="utf-8") == render(), (
        "docs/asyncapi.yaml is stale: run `python -m ledgerflow.contracts.asyncapi > docs/asyncapi.yaml`"
    )


def test_rendered_yaml_parses_back_to_the_document() -> None:
    assert yaml.safe_load(render()) == document()


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    node: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if "$ref" in node else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_and_every_schema_version_is_a_message() -> None:
    doc = document()
    for ref in _refs(doc):
        assert _resolve(doc, ref) is not None, ref
    entries = default_registry().entries()
    assert set(doc["components"]["messages"]) == {f"{e.type}.v{e.version}" for e in entries}
    for entry in entries:
        message = doc["components"]["messages"][f"{entry.type}.v{entry.version}"]
        assert message["payload"]["schema"] == entry.schema
        assert message["x-fingerprint"] == entry.fingerprint_hex


def test_every_topic_has_a_dead_letter_channel() -> None:
    addresses = {c["address"] for c in document()["channels"].values()}
    for address in list(addresses):
        if not address.endswith(".dlq"):
            assert address + ".dlq" in addresses


_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=10,
)


@given(_JSONISH)
def test_yaml_emitter_round_trips_json_like_data(value: Any) -> None:
    assert yaml.safe_load(_yaml.dump(value)) == value
