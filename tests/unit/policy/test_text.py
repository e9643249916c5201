"""Case folding with offsets, and keyword matching at word boundaries."""

from __future__ import annotations

import pytest

from ledgerflow.policy.text import compile_keywords, fold


def keyword_hits(keywords: tuple[str, ...], text: str) -> list[str]:
    folded = fold(text)
    matcher = compile_keywords(keywords)
    return [text[slice(*folded.to_original(s, e))] for s, e in matcher.spans(folded.folded)]


def test_fold_keeps_offsets_when_lengths_do_not_change() -> None:
    folded = fold("HELLO Wörld")
    assert folded.folded == "hello wörld"
    assert folded.origin is None
    assert folded.to_original(6, 11) == (6, 11)


def test_fold_maps_expanded_characters_back_to_the_original() -> None:
    folded = fold("Straße 9")
    assert folded.folded == "strasse 9"
    assert folded.origin == (0, 1, 2, 3, 4, 4, 5, 6, 7)
    assert folded.to_original(0, 7) == (0, 6)
    # A span ending inside an expansion covers the whole original character.
    assert folded.to_original(5, 6) == (4, 5)


@pytest.mark.parametrize("text", ["STRASSE", "Straße", "strasse", "STRAẞE"])
def test_keyword_strasse_matches_every_case_folding_of_it(text: str) -> None:
    assert keyword_hits(("strasse",), f"in der {text} 9") == [text]


def test_keyword_with_sharp_s_matches_the_ss_spelling() -> None:
    assert keyword_hits(("Straße",), "STRASSE") == ["STRASSE"]


def test_keyword_matches_greek_final_sigma_case_insensitively() -> None:
    assert keyword_hits(("ΟΔΥΣΣΕΥΣ",), "ο Οδυσσευς ήρθε") == ["Οδυσσευς"]


@pytest.mark.parametrize("text", ["class", "assistant", "bass", "ass_hole", "ass9"])
def test_keyword_does_not_match_inside_a_word(text: str) -> None:
    assert keyword_hits(("ass",), f"a {text} here") == []


@pytest.mark.parametrize(
    ("text", "hit"), [("ass", "ass"), ("ASS", "ASS"), ("(ass)", "ass"), ("ass.", "ass"), ("'Ass'", "Ass")]
)
def test_keyword_matches_at_word_boundaries(text: str, hit: str) -> None:
    assert keyword_hits(("ass",), f"what an {text} here") == [hit]


def test_keyword_boundary_is_unicode_aware() -> None:
    # "é" is a word character: "éass" is one word, so "ass" is not matched there.
    assert keyword_hits(("ass",), "éass") == []


def test_keyword_phrase_matches_any_whitespace_run() -> None:
    text = "please IGNORE\n  previous\tinstructions now"
    assert keyword_hits(("ignore previous instructions",), text) == ["IGNORE\n  previous\tinstructions"]


def test_keyword_longest_alternative_wins_and_all_occurrences_found() -> None:
    text = "system prompt, then the System Prompt Leak"
    assert keyword_hits(("system prompt", "system prompt leak"), text) == [
        "system prompt",
        "System Prompt Leak",
    ]


def test_keyword_with_punctuation_is_escaped() -> None:
    assert keyword_hits(("c++",), "I write C++ daily") == ["C++"]
    assert keyword_hits(("a.b",), "axb") == []


def test_keyword_search_skips_a_bad_boundary_and_finds_a_later_match() -> None:
    folded = fold("class ass")
    assert compile_keywords(("ass",)).search(folded.folded)
    assert not compile_keywords(("ass",)).search(fold("class bass").folded)
