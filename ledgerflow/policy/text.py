"""Unicode case folding with offsets back to the original text, and keyword matchers.

Keywords are matched on ``str.casefold()`` of the content, so "STRASSE",
"Straße" and "strasse" all match the keyword "strasse" (and the keyword
"straße", which folds to the same). Folding can change the length of the text
(ß → ss, İ → i̇), so a :class:`FoldedText` keeps a map from folded offsets to
original offsets; spans are always reported on the original text.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass

from ledgerflow.policy import budget as cost
from ledgerflow.policy.budget import WorkMeter, unmetered


def _expanding_characters() -> str:
    """The characters of the Basic Multilingual Plane whose case folding is longer
    than one character (ß, İ, ﬃ …), found by folding the plane in blocks (~4 ms).

    Every such character of Unicode 14 is in that plane; ``fold`` checks the
    lengths and falls back to folding character by character if a later Unicode
    version ever adds one outside it.
    """
    found: list[str] = []
    for low in range(0, 0x10000, 512):
        block = "".join(map(chr, range(low, low + 512)))
        if len(block.casefold()) != len(block):
            found.extend(char for char in block if len(char.casefold()) > 1)
    return "".join(found)


_EXPANDING = re.compile("[" + "".join(re.escape(char) for char in _expanding_characters()) + "]")


@dataclass(frozen=True, slots=True)
class FoldedText:
    """``original`` and its case-folded form, with an offset map when lengths differ.

    The map is kept compact: one entry per character that folds to several
    (``expansions``), so a 64 KiB turn with a few "ß" costs no 64K-entry table.
    """

    original: str
    folded: str
    expansions: tuple[tuple[int, int, int], ...] | None = None
    """(folded start, folded end, original index) of each expanding character, in order;
    None when folding kept every length."""

    @property
    def origin(self) -> tuple[int, ...] | None:
        """origin[i] is the original index of folded[i]; None when folding kept every length."""
        if self.expansions is None:
            return None
        return tuple(self._original_index(index) for index in range(len(self.folded)))

    def to_original(self, start: int, end: int) -> tuple[int, int]:
        """Map a folded span [start, end) to the smallest original span covering it."""
        if self.expansions is None:
            return start, end
        if start >= end:
            position = self._original_index(start) if start < len(self.folded) else len(self.original)
            return position, position
        return self._original_index(start), self._original_index(end - 1) + 1

    def _original_index(self, position: int) -> int:
        expansions = self.expansions
        assert expansions is not None
        # The last expansion starting at or before ``position``.
        index = bisect_right(expansions, (position, _AFTER, _AFTER)) - 1
        if index < 0:
            return position
        _folded_start, folded_end, original = expansions[index]
        if position < folded_end:
            return original
        return original + 1 + (position - folded_end)


_AFTER = 1 << 62


def fold(text: str, meter: WorkMeter | None = None) -> FoldedText:
    """Case-fold ``text`` (Unicode full case folding, no normalization)."""
    meter = meter if meter is not None else unmetered()
    meter.charge(cost.FOLD_PER_CHAR * len(text))
    folded = text.casefold()
    if len(folded) == len(text):
        # Every character folds to at least one character, so equal lengths mean
        # every character folded to exactly one: offsets are unchanged.
        return FoldedText(text, folded, None)
    # Only the characters that fold to several characters shift the offsets.
    meter.charge(cost.FOLD_PER_CHAR * len(folded))
    expansions: list[tuple[int, int, int]] = []
    shift = 0
    for match in _EXPANDING.finditer(text):
        meter.charge(cost.FOLD_PER_EXPANSION)
        index = match.start()
        size = len(match.group().casefold())
        expansions.append((index + shift, index + shift + size, index))
        shift += size - 1
    if len(text) + shift != len(folded):
        # A later Unicode version folds a character outside the table: map them all.
        expansions = []
        shift = 0
        for index, char in enumerate(text):
            size = len(char.casefold())
            if size > 1:
                expansions.append((index + shift, index + shift + size, index))
                shift += size - 1
    return FoldedText(text, folded, tuple(expansions))


def keyword_regex(keywords: tuple[str, ...]) -> str:
    """Regex source matching any keyword on folded text, with its right word boundary.

    A keyword is case-folded and its runs of whitespace match any run of
    whitespace; longer keywords are tried first. The left boundary is checked by
    :class:`KeywordMatcher` (a leading lookbehind would make the regex engine
    test every position of the text, several times slower).
    """
    alternatives: set[str] = set()
    for keyword in keywords:
        words = keyword.casefold().split()
        if words:
            alternatives.add(r"\s+".join(re.escape(word) for word in words))
    ordered = sorted(alternatives, key=lambda source: (-len(source), source))
    return r"(?:" + "|".join(ordered) + r")(?!\w)"


@dataclass(frozen=True, slots=True)
class KeywordMatcher:
    """Any of a rule's keywords, at word boundaries, on case-folded text.

    A match must be neither preceded nor followed by a word character (Unicode
    ``\\w``), so the keyword "ass" does not match "class" or "assistant".
    """

    pattern: re.Pattern[str]

    def search(self, folded: str, meter: WorkMeter | None = None) -> bool:
        """True if any keyword occurs in ``folded``."""
        for _ in self._spans(folded, meter if meter is not None else unmetered()):
            return True
        return False

    def spans(self, folded: str, meter: WorkMeter | None = None) -> list[tuple[int, int]]:
        """Every non-overlapping keyword match in ``folded``, left to right."""
        return list(self._spans(folded, meter if meter is not None else unmetered()))

    def _spans(self, folded: str, meter: WorkMeter) -> Iterator[tuple[int, int]]:
        search = self.pattern.search
        position = 0
        meter.charge(cost.KEYWORDS_PER_CHAR * len(folded))
        while True:
            match = search(folded, position)
            if match is None:
                return
            meter.charge(cost.MATCH)
            start, end = match.span()
            if start and (folded[start - 1].isalnum() or folded[start - 1] == "_"):
                position = start + 1
                continue
            yield start, end
            position = end if end > start else start + 1


def compile_keywords(keywords: tuple[str, ...]) -> KeywordMatcher:
    """Compile a rule's keywords once; match them against ``FoldedText.folded``."""
    return KeywordMatcher(re.compile(keyword_regex(keywords)))
