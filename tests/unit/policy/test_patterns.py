"""Rule pack patterns: which engine runs each, and RE2 finding exactly what Python's re finds."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from re import _parser as sre_parse  # type: ignore[attr-defined]

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.policy import patterns
from ledgerflow.policy.patterns import (
    MAX_PATHS,
    PatternRefused,
    backtracking,
    compile_pattern,
    unbounded_patterns,
)


def engine_of(source: str) -> str:
    return compile_pattern(source, re.compile(source)).engine


@pytest.mark.parametrize(
    ("source", "engine"),
    [
        (r"\d+ dollars", "re2"),
        (r"\S+@\S+", "re2"),
        (r"(?i)password\s*[:=]\s*\S+", "re2"),
        (r"^system:.*", "re2"),
        (r"(?m)^ignore.*$", "re2"),
        (r"(?a)\bsecret\w*", "re2"),
        (r"\bACME-\d{3,6}\b", "bounded"),
        (r"you are (?:now )?(?:dan|an? unfiltered)\b", "bounded"),
        (r"(?<=key=)\w{8}", "bounded"),
        (r"\b\d+ dollars", "unbounded"),
        (r"token: .*$", "unbounded"),
        (r"(\w{1,20})x\1", "bounded"),
        (r"(?=x)\w+", "unbounded"),
    ],
)
def test_each_pattern_gets_the_engine_its_meaning_allows(source: str, engine: str) -> None:
    assert engine_of(source) == engine


def test_unbounded_patterns_are_named_for_publishing() -> None:
    assert unbounded_patterns((r"\d+ dollars", r"\b\d+ dollars", r"\bACME-\d+")) == (
        r"\b\d+ dollars",
        r"\bACME-\d+",
    )


@pytest.mark.parametrize(
    ("source", "text"),
    [
        (r"(?i)k+", "kK\u212a k"),  # Python's (?i) k also matches KELVIN SIGN
        (r"(?i)s\w+", "S\u017f\u017ft sss"),  # and s the long s
        (r"\w+", "na\u00efve \u0663\u0664 \u00b2 caf\u00e9_1 \u2168"),  # Unicode word characters
        (r"\d+", "\u0663\u0664 \u00b2 12"),  # \u00b2 is not a decimal digit
        (r"\s+", "a\u00a0\u2028\x1c b"),
        (r"[^a]+", "x\ud800y a z"),  # a lone surrogate is one character in both engines
        (r"^\w+", "first line\nsecond"),
        (r"(?m)^\w+", "first line\nsecond"),
        (r"a.*?b|a", "a a ab a"),
    ],
)
def test_re2_spans_equal_python_spans(source: str, text: str) -> None:
    matcher = compile_pattern(source, re.compile(source))
    assert matcher.engine == "re2"
    assert matcher.spans(text) == [match.span() for match in re.finditer(source, text)]
    assert matcher.search(text) is (re.search(source, text) is not None)


def test_patterns_re2_would_read_differently_stay_on_python() -> None:
    # U+FFFD stands for a lone surrogate in RE2, so a pattern naming it is not translated.
    assert engine_of("\ufffd+") == "unbounded"
    assert engine_of("[\ud800-\udfff]+") == "unbounded"


PIECES = st.sampled_from(
    [
        "a", "b", "k", "s", r"\d", r"\w", r"\s", r"\W", r"\S", ".", "[a-c]", "[^a]", r"[\w-]", "é", "ß",
        "(?:a|ab)", "(?:b|a)", " ", r"\n", "^", r"\A", r"\Z", "(?m:^)", "(?m:$)", "(?s:.)", r"(?a:\b)",
        "(?i:k)", "(?i:[a-z])", "(?i:σ)", "[K-k]",
    ]
)  # fmt: skip
QUANTIFIERS = st.sampled_from(["", "", "*", "+", "?", "*?", "+?", "{1,3}", "{2,}"])
TEXT = st.text(alphabet="aAbBkKsSx1 \n\té ß٣_-ǅΣσςſ\u212a\u00a0\ud800\ufffd", max_size=16)


@settings(max_examples=60, deadline=None)
@given(
    parts=st.lists(st.tuples(PIECES, QUANTIFIERS), min_size=1, max_size=4),
    ignore_case=st.booleans(),
    texts=st.lists(TEXT, min_size=1, max_size=5),
)
def test_translated_patterns_find_exactly_what_python_finds(
    parts: list[tuple[str, str]], ignore_case: bool, texts: list[str]
) -> None:
    source = ("(?i)" if ignore_case else "") + "".join(piece + quantifier for piece, quantifier in parts)
    try:
        python = re.compile(source)
    except re.error:
        return
    try:
        matcher = compile_pattern(source, python)
    except PatternRefused:
        return
    for text in texts:
        assert matcher.spans(text) == [match.span() for match in python.finditer(text)], (source, text)
        assert matcher.search(text) is (python.search(text) is not None)


# -- backtracking bound of the patterns Python's re runs ---------------------------------

ROOT = Path(__file__).resolve().parents[3]
SHIPPED = sorted(
    {
        source
        for path in [
            ROOT / "ledgerflow/policy/builtin_default.json",
            *sorted((ROOT / "examples/rulepacks").glob("*.json")),
        ]
        for rule in json.loads(path.read_text(encoding="utf-8"))["rules"]
        for source in rule["when"].get("patterns", ())
    }
)


def refusal(source: str) -> str:
    with pytest.raises(PatternRefused) as info:
        backtracking(sre_parse.parse(source))
    return str(info.value)


@pytest.mark.parametrize(
    ("source", "why"),
    [
        (r"^(\w+\s?)+$", "exponentially"),  # the reviewer's pattern: 36.8 s on 29 characters
        (r"(a+)+$", "exponentially"),
        (r"(a|a)*$", "exponentially"),  # Python factors it into a(?:|): still two ways per a
        (r"(?:a|aa)+\b", "exponentially"),
        (r"(?:a|aa){1,60}(?=c)", f"more than {MAX_PATHS} ways"),  # "bounded", 4.4 s on 36 a's
        (r"(a|aa){1,10}\b", f"more than {MAX_PATHS} ways"),
        (r"(?:\w\s?){1,30}x\b", f"more than {MAX_PATHS} ways"),
        (r"(.*a){20}", "quadratic"),
        (r"\ba*a*a*b", "quadratic"),
        (r".*.*=.*$", "quadratic"),
        (r"(?:(?=.*x)\w)+$", "quadratic"),  # a lookahead to the end inside an unbounded repeat
        (r"(?=(?=(a+)+)a)\w", "exponentially"),  # nested lookarounds are analysed too
        (r"(\w+) \1", "quadratic"),  # each end of \w+ compares up to the rest of the text
        (r"(?:\b)+x", "empty string"),
    ],
)
def test_patterns_that_backtrack_without_bound_are_refused(source: str, why: str) -> None:
    assert why in refusal(source)


@pytest.mark.parametrize(
    "source",
    [
        *SHIPPED,
        r"\d{3,6}",
        r"\b(?:alpha|beta|gamma|delta)\b",
        r"(?i)\b(?:drop|delete)\s+table\b",
        r"[a-z]{1,999}\b",
        r"\b\d+ dollars",
        r"token: .*$",
        r"(?=(?=a*)a*b)\w+$",
        r"(?<=key=)\w{8}",
        r"\w{1,5000}\b",
        r"(?>a|aa)+\b",
    ],
)
def test_linear_or_bounded_patterns_are_admitted(source: str) -> None:
    bound = backtracking(sre_parse.parse(source))
    assert bound.paths.const <= MAX_PATHS
    compile_pattern(source, re.compile(source))


def test_the_shipped_patterns_run_on_python_and_are_bounded() -> None:
    assert SHIPPED, "the builtin and example packs have patterns"
    for source in SHIPPED:
        matcher = compile_pattern(source, re.compile(source))
        assert (matcher.engine, matcher.steps_per_char) == ("bounded", 0), source
        assert matcher.steps <= 100, (source, matcher.steps)


@pytest.mark.parametrize(
    ("source", "steps", "per_char"),
    [
        # \d{3,6}: 6 characters, ending in 4 places, each followed by the \b check.
        (r"\bACME-\d{3,6}\b", 1 + 5 + 6 + 4, 0),
        # [a-z]{1,999} reads up to 999 letters and tries \b at each of its 999 ends.
        (r"[a-z]{1,999}\b", 999 + 999, 0),
        # \d+ ends at each of the r characters left, " dollars" is tried from each end.
        (r"\b\d+ dollars", 1 + 8, 1 + 8),
    ],
)
def test_the_bound_counts_the_backtracking_tree(source: str, steps: int, per_char: int) -> None:
    matcher = compile_pattern(source, re.compile(source))
    assert (matcher.steps, matcher.steps_per_char) == (steps, per_char)


def test_patterns_re2_runs_are_not_refused_for_their_shape() -> None:
    """RE2 is linear whatever the pattern's shape: only what Python must run is analysed."""
    assert engine_of(r"(a+)+b") == "re2"
    assert engine_of(r"(.*a){20}") == "re2"
    with pytest.raises(PatternRefused):
        compile_pattern(r"(a+)+$", re.compile(r"(a+)+$"))


def test_the_memo_of_character_members_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every distinct class a validated pattern brings was remembered for good: repeated hostile
    ``POST /v1/policy/validate`` calls grew the edge's memory without bound. The memo keeps the
    ``MEMBERS_MEMO`` most recently used (here 8: a scan costs ~20 ms, filling 4,096 would take
    80 s), and what it forgets is found again, the same."""
    assert patterns._members_of.cache_info().maxsize == patterns.MEMBERS_MEMO == 4096
    small = functools.lru_cache(maxsize=8)(patterns._scan_node)
    monkeypatch.setattr(patterns, "_members_of", small)
    first = compile_pattern("(?i)[a-b]x", re.compile("(?i)[a-b]x")).linear
    assert first is not None
    for n in range(40):
        assert engine_of(f"(?i)[a-{chr(ord('c') + n % 20)}]{n}") == "re2"
    info = small.cache_info()
    assert info.misses > 20 and info.currsize == 8, info
    again = compile_pattern("(?i)[a-b]x", re.compile("(?i)[a-b]x")).linear
    assert again is not None and again.pattern == first.pattern
