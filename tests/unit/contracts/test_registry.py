from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import avro.schema
import pytest
from fastavro.schema import fingerprint as fastavro_fingerprint
from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.contracts.payloads import PAYLOAD_TYPES, DeadLetter
from ledgerflow.contracts.registry import (
    LOCK_FILE,
    canonical_form,
    content_digest,
    crc64_avro,
    default_registry,
    envelope_fields,
    fingerprint,
    load_registry,
    logical_wrapper_form,
    read_lock,
    render_lock,
    schemas_dir,
)
from ledgerflow.errors import ValidationError

REPO_SCHEMAS = Path(__file__).resolve().parents[3] / "schemas"
ENTRIES = default_registry().entries()
IDS = [f"{e.type}.v{e.version}" for e in ENTRIES]


def test_crc64_matches_the_avro_specification_test_vector() -> None:
    # The Avro spec / Java test data: fingerprint64('"int"') == 0x7275d51a3f395c8f.
    assert crc64_avro(b'"int"') == 0x7275D51A3F395C8F


@given(st.binary(max_size=200))
def test_crc64_matches_the_avro_reference_package(data: bytes) -> None:
    from avro.schema import _crc_64_fingerprint

    assert crc64_avro(data).to_bytes(8, "little") == _crc_64_fingerprint(data)


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_fingerprint_is_crc64_of_the_spec_canonical_form_as_fastavro_computes(entry) -> None:
    pcf = canonical_form(entry.schema)
    assert '"logicalType"' not in pcf and '"doc"' not in pcf
    assert entry.fingerprint.hex() == fastavro_fingerprint(pcf, "CRC-64-AVRO")


@pytest.mark.parametrize("entry", ENTRIES, ids=IDS)
def test_alias_fingerprint_is_what_the_python_avro_package_computes(entry) -> None:
    parsed = avro.schema.parse(json.dumps(entry.schema))
    assert logical_wrapper_form(entry.schema) == parsed.canonical_form
    assert entry.alias_fingerprint == parsed.fingerprint("CRC-64-AVRO")


def test_schemas_dir_finds_the_checked_in_schemas() -> None:
    assert Path(str(schemas_dir())).resolve() == REPO_SCHEMAS


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.is_event], ids=lambda e: e.file_name)
def test_every_event_schema_repeats_the_reference_envelope_verbatim(entry) -> None:
    fields = entry.schema["fields"]
    assert fields[:-1] == envelope_fields(), (
        f"{entry.file_name}: envelope fields differ from schemas/_envelope.avsc; "
        "the envelope is defined once there and copied verbatim"
    )
    assert fields[-1]["name"] == "payload"


def test_every_payload_dataclass_has_exactly_its_newest_schema_fields_in_order() -> None:
    registry = default_registry()
    assert set(PAYLOAD_TYPES) == registry.event_types
    for name, cls in PAYLOAD_TYPES.items():
        schema_fields = [f["name"] for f in registry.latest(name).payload_schema()["fields"]]
        assert [f.name for f in dataclasses.fields(cls)] == schema_fields, name
    dead_letter_fields = [f["name"] for f in registry.latest("DeadLetter").schema["fields"]]
    assert [f.name for f in dataclasses.fields(DeadLetter)] == dead_letter_fields


def test_published_schemas_match_the_lock_file() -> None:
    locked = read_lock((REPO_SCHEMAS / LOCK_FILE).read_text(encoding="utf-8"))
    current = {(e.type, e.version): (e.fingerprint_hex, content_digest(e.schema)) for e in ENTRIES}
    for key, (fp, digest) in locked.items():
        assert key in current, (
            f"{key[0]}.v{key[1]}.avsc is in {LOCK_FILE} but was deleted: published schemas "
            "stay forever (old records on the log still use them); restore the file"
        )
        assert current[key] == (fp, digest), (
            f"schemas/{key[0]}.v{key[1]}.avsc was edited in place after publication. "
            f"Restore it and add {key[0]}.v{key[1] + 1}.avsc (plus an upcaster if needed) instead"
        )
    for key in current.keys() - locked.keys():
        pytest.fail(
            f"{key[0]}.v{key[1]}.avsc is not in schemas/{LOCK_FILE}: after the compatibility "
            "tests pass, run `python -m ledgerflow.contracts.registry > schemas/fingerprints.lock`"
        )


def test_lock_file_is_exactly_what_the_registry_renders() -> None:
    assert (REPO_SCHEMAS / LOCK_FILE).read_text(encoding="utf-8") == render_lock(default_registry())


def test_content_digest_changes_when_a_default_changes_but_not_when_docs_do() -> None:
    schema = default_registry().latest("MessageSubmitted").schema
    documented = json.loads(json.dumps(schema))
    documented["doc"] = "reworded"
    assert content_digest(documented) == content_digest(schema)
    changed = json.loads(json.dumps(schema))
    changed["fields"][7]["default"] = "x"  # trace_id
    assert fingerprint(changed) == fingerprint(schema)  # the wire id cannot see it ...
    assert content_digest(changed) != content_digest(schema)  # ... the lock can


def _copy(tmp_path: Path, *names: str) -> Path:
    for name in names:
        (tmp_path / name).write_text((REPO_SCHEMAS / name).read_text())
    return tmp_path


def _copy_as(tmp_path: Path, source: str, target: str) -> None:
    (tmp_path / target).write_text((REPO_SCHEMAS / source).read_text())


def test_registry_refuses_a_version_gap(tmp_path: Path) -> None:
    _copy(tmp_path, "MessageSubmitted.v1.avsc")
    _copy_as(tmp_path, "MessageSubmitted.v2.avsc", "MessageSubmitted.v3.avsc")
    with pytest.raises(ValidationError, match="no gap"):
        load_registry(tmp_path)


def test_registry_refuses_a_record_named_unlike_its_file(tmp_path: Path) -> None:
    _copy_as(tmp_path, "ConversationClosed.v1.avsc", "Other.v1.avsc")
    with pytest.raises(ValidationError, match="must be named io.ledgerflow.Other"):
        load_registry(tmp_path)


def test_registry_refuses_two_versions_with_the_same_wire_schema(tmp_path: Path) -> None:
    _copy(tmp_path, "ConversationClosed.v1.avsc")
    _copy_as(tmp_path, "ConversationClosed.v1.avsc", "ConversationClosed.v2.avsc")
    with pytest.raises(ValidationError, match="same fingerprint"):
        load_registry(tmp_path)
