"""Pattern limits of a rule pack (policy/packlimits.py): refused in one line, before compiling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ledgerflow.errors import ValidationError
from ledgerflow.policy import check_rule_pack, load_rule_pack, packlimits
from ledgerflow.policy.packlimits import (
    MAX_CASELESS_CHARACTERS,
    MAX_PATTERN_CHARS,
    MAX_PATTERN_POSITIONS,
    MAX_PATTERNS,
    MAX_RE2_BYTES,
    pack_patterns,
)
from tests.support.compiles import count_rule_compiles

ROOT = Path(__file__).resolve().parents[3]


def _pack(patterns: list[str], per_rule: int = 1) -> dict[str, Any]:
    rules = [
        {"id": f"r{i}", "when": {"patterns": patterns[i : i + per_rule]}, "action": "review", "weight": 1}
        for i in range(0, len(patterns), per_rule)
    ]
    return {"tenant": "acme", "rules": rules}


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the rules compiled (a spy on the pure compile step)."""
    return count_rule_compiles(monkeypatch)


def _refusal(doc: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        load_rule_pack(doc)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("rule pack is too costly to compile: ")
    return message


def test_the_reviewers_pack_of_case_insensitive_repeats_is_refused_without_compiling(
    compiles: list[int],
) -> None:
    # POST /v1/policy/validate with 500 of these blocked the edge 16 s and took 800 MB.
    doc = _pack([f"(?i)\\D{{{999 - i}}}" for i in range(500)], per_rule=100)
    assert "500 patterns; at most 64" in _refusal(doc)
    assert compiles == []


def test_too_many_patterns_or_too_much_source_is_refused(compiles: list[int]) -> None:
    assert f"at most {MAX_PATTERNS}" in _refusal(_pack([f"w{i}x" for i in range(MAX_PATTERNS + 1)]))
    long = [f"{i}" + "x" * 999 for i in range(MAX_PATTERN_CHARS // 1000 + 1)]  # 1,000 each: the schema's most
    assert f"at most {MAX_PATTERN_CHARS}" in _refusal(_pack(long))
    assert compiles == []


def test_repeats_are_counted_out_and_nested_ones_multiply(compiles: list[int]) -> None:
    assert "character positions" in _refusal(_pack(["(?i)\\D{999}", "(?i)\\D{998}", "\\w{99}"]))
    assert "character positions" in _refusal(_pack(["(?:ab{50}){50}"]))
    assert "character positions" in _refusal(_pack(["(?:x(?=y{3000}))"]))
    assert compiles == []
    load_rule_pack(_pack(["\\bACME-\\d{3,6}\\b", "[a-z]{2,}@[a-z]+"]))  # ordinary patterns are far below


def test_distinct_case_insensitive_characters_are_limited(compiles: list[int]) -> None:
    letters = "".join(chr(0x100 + i) for i in range(MAX_CASELESS_CHARACTERS + 1))
    assert f"at most {MAX_CASELESS_CHARACTERS}" in _refusal(_pack([f"(?i){letters}"]))
    assert compiles == []
    load_rule_pack(_pack([f"(?i){letters[:-2]}", f"{letters}"]))  # case-sensitive ones do not count


def test_re2_programs_over_the_budget_are_refused_while_compiling() -> None:
    # Within every limit checked before compiling; \w is a class of ~1,300 RE2 instructions.
    doc = _pack([f"\\w{{{40 - i % 3}}}x" for i in range(30)])
    message = _refusal(doc)
    assert f"more than {MAX_RE2_BYTES >> 20} MiB of RE2 programs" in message


def test_the_builtin_and_example_packs_are_far_below_every_limit() -> None:
    paths = [
        ROOT / "ledgerflow/policy/builtin_default.json",
        *sorted((ROOT / "examples/rulepacks").glob("*.json")),
    ]
    for path in paths:
        doc = json.loads(path.read_text(encoding="utf-8"))
        sources = pack_patterns(doc)
        assert len(sources) * 8 <= MAX_PATTERNS, path
        assert sum(map(len, sources)) * 8 <= MAX_PATTERN_CHARS, path
        positions = sum(packlimits._positions(packlimits.sre_parse.parse(s), 0, set()) for s in sources)
        assert positions * 8 <= MAX_PATTERN_POSITIONS, path
        check_rule_pack(doc)
