"""Rule pack patterns: which engine runs each, and RE2 finding exactly what Python's re finds."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.policy.patterns import compile_pattern, unbounded_patterns


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
        (r"(\w+) \1", "unbounded"),
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
    matcher = compile_pattern(source, python)
    for text in texts:
        assert matcher.spans(text) == [match.span() for match in python.finditer(text)], (source, text)
        assert matcher.search(text) is (python.search(text) is not None)
