"""Rule pack patterns in linear time: RE2 where it means exactly what Python ``re`` means.

A rule pack's ``patterns`` are Python regular expressions. Python's backtracking
engine is quadratic or worse on hostile text even for innocent-looking patterns
(``\\d+ dollars`` on 64 KiB of digits: seconds). So each pattern is classified once,
when the pack is loaded, from its parse tree:

- ``re2``: translated to an RE2 expression with *the same matches* (same spans, same
  leftmost-first preference) and run by RE2, which is linear in the text. Character
  classes (``\\d``, ``\\w``, ``\\s``) are expanded to the exact code points Python's
  ``re`` gives them, and under ``(?i)`` every letter becomes the class of exactly
  the characters Python accepts for it (``k`` → ``[Kk\\u212a]``), so Unicode
  versions and case rules cannot make the two engines disagree.
- ``bounded``: not translatable, but every match is at most ``MAX_BOUNDED_WIDTH``
  characters long (``\\bACME-\\d{3,6}\\b``): Python ``re`` tries a bounded amount of
  text from each position, so a search is linear in the text (charged by the budget
  as ``width`` per position where a match can start).
- ``unbounded``: neither (an unbounded repeat together with ``\\b``, ``$``, a
  lookaround, a backreference …). Python ``re`` runs it, and the evaluation
  budget charges it as quadratic (``budget.PATTERN_UNBOUNDED_PER_CHAR_SQUARED``), so
  on a long turn it gives ``review``/``evaluation_budget`` instead of a stall.
  :func:`unbounded_patterns` names them, to refuse or warn when a pack is published.

The translation refuses anything whose meaning could differ between the engines,
so a pattern gives the same decisions whichever engine runs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from re import _compiler as sre_compile  # type: ignore[attr-defined]
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any, Literal

import re2

from ledgerflow.policy import budget as cost
from ledgerflow.policy.budget import WorkMeter, unmetered

Engine = Literal["re2", "bounded", "unbounded"]

MAX_BOUNDED_WIDTH = 1000
"""Longest match (in characters) of a pattern Python ``re`` may run as ``bounded``."""

_RE2_MAX_REPEAT = 1000
_RE2_MAX_MEM = 8 << 20
"""RE2's memory for one program (its default); a larger program is refused, not built."""
_SURROGATES = re.compile("[\ud800-\udfff]")
_REPLACEMENT = 0xFFFD
_ASCII_CLASSES = {
    sre.CATEGORY_DIGIT: "0-9",
    sre.CATEGORY_SPACE: "\\t\\n\\x0b\\x0c\\r ",
    sre.CATEGORY_WORD: "0-9A-Z_a-z",
}
_NEGATED = {
    sre.CATEGORY_NOT_DIGIT: sre.CATEGORY_DIGIT,
    sre.CATEGORY_NOT_SPACE: sre.CATEGORY_SPACE,
    sre.CATEGORY_NOT_WORD: sre.CATEGORY_WORD,
}
_UNICODE_SOURCE = {sre.CATEGORY_DIGIT: r"\d+", sre.CATEGORY_SPACE: r"\s+", sre.CATEGORY_WORD: r"\w+"}


class _Untranslatable(Exception):
    """The pattern uses something RE2 would read differently (or cannot run)."""


@dataclass(frozen=True, slots=True)
class PatternMatcher:
    """One compiled rule pack pattern and the engine that runs it."""

    source: str
    python: re.Pattern[str]
    engine: Engine
    linear: Any | None
    """The RE2 program when ``engine == "re2"``."""
    width: int | None = None
    """The longest match, when it is at most ``MAX_BOUNDED_WIDTH``; None when unbounded."""
    lookahead: int | None = None
    """For ``re2``: how far past a match a search may read to rule out a preferred
    alternative; None when that is not bounded (``x+y|x``)."""
    prefix: str = ""
    """For ``bounded`` patterns: the literal every match starts with (after anchors such as
    ``\\b``); Python's ``re`` does real work only where it occurs."""

    def spans(self, subject: str, meter: WorkMeter | None = None) -> list[tuple[int, int]]:
        """Every non-overlapping match, left to right (as ``re.finditer``).

        Each match is charged to ``meter``. RE2 finds the matches one search at a time,
        and a search may read past its match while a preferred alternative is still
        possible (``x+y|x`` on a run of x reads to the end of the run every time): for a
        pattern without a width bound each further search is charged for the rest of
        the text, otherwise for the pattern's width.
        """
        meter = meter if meter is not None else unmetered()
        found: list[tuple[int, int]] = []
        if self.linear is None:
            for match in self.python.finditer(subject):
                meter.charge(cost.MATCH)
                found.append(match.span())
            return found
        text = _for_re2(subject)
        matches = self.linear.finditer(text)
        while True:
            if found:
                reach = len(text) - found[-1][1] if self.lookahead is None else self.lookahead
                meter.charge(cost.RE2_SEARCH_PER_CHAR * reach)
            linear_match = next(matches, None)
            if linear_match is None:
                return found
            meter.charge(cost.RE2_MATCH)
            found.append(linear_match.span())

    def search(self, subject: str) -> bool:
        """True if the pattern matches somewhere in ``subject`` (as ``re.search``)."""
        if self.linear is None:
            return self.python.search(subject) is not None
        return self.linear.search(_for_re2(subject)) is not None


def compile_pattern(source: str, python: re.Pattern[str]) -> PatternMatcher:
    """Classify ``source`` (already compiled by Python as ``python``) and pick its engine."""
    parsed = sre_parse.parse(source, python.flags & ~re.UNICODE)
    low, high = parsed.getwidth()
    try:
        if low < 1:
            raise _Untranslatable("it can match the empty string")
        translated = _Translator(python.flags).sequence(parsed)
        options = re2.Options()
        options.max_mem = _RE2_MAX_MEM
        options.log_errors = False
        options.never_capture = True
        linear = re2.compile(translated, options)
    except (_Untranslatable, re2.error):
        if high > MAX_BOUNDED_WIDTH:
            return PatternMatcher(source, python, "unbounded", None)
        prefix = _literal_prefix(parsed, python.flags)
        return PatternMatcher(source, python, "bounded", None, width=high, prefix=prefix)
    width = high if high <= MAX_BOUNDED_WIDTH else None
    return PatternMatcher(source, python, "re2", linear, width=width, lookahead=_lookahead(parsed, width))


def _lookahead(parsed: Any, width: int | None) -> int | None:
    """A bound on how far past its match an RE2 search may read, or None.

    A search stops once no thread it prefers to the match found can still match. A
    thread outlives the match only inside an alternative or a repeated group that
    was left for a shorter way: with every alternative and every repeated body of
    bounded width, it dies within that width.
    """
    if width is not None:
        return width
    widest = 1
    pending = [parsed]
    while pending:
        for op, av in pending.pop():
            if op is sre.BRANCH:
                for branch in av[1]:
                    high = branch.getwidth()[1]
                    if high > MAX_BOUNDED_WIDTH:
                        return None
                    widest = max(widest, high)
                    pending.append(branch)
            elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
                body = av[2]
                high = body.getwidth()[1]
                if high > MAX_BOUNDED_WIDTH:
                    return None
                widest = max(widest, high)
                pending.append(body)
            elif op is sre.SUBPATTERN:
                pending.append(av[3])
    return widest


_ANCHORS = (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING, sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY)


def _literal_prefix(parsed: Any, flags: int) -> str:
    """The literal text every match starts with, after leading zero-width anchors."""
    if flags & re.IGNORECASE:
        return ""
    items = list(parsed)
    index = 0
    while index < len(items) and items[index][0] is sre.AT and items[index][1] in _ANCHORS:
        index += 1
    prefix: list[str] = []
    while index < len(items) and items[index][0] is sre.LITERAL:
        prefix.append(chr(items[index][1]))
        index += 1
    return "".join(prefix)


def _for_re2(subject: str) -> str:
    """RE2 reads UTF-8: lone surrogates (possible in a Python str) become U+FFFD.

    Translation refuses patterns that could tell the two apart, and both are one
    code point, so spans are unchanged.
    """
    if subject.isascii():
        return subject
    try:
        subject.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATES.sub("\ufffd", subject)
    return subject


class _Translator:
    """Python ``re`` parse tree → RE2 source with the same matches, or _Untranslatable."""

    def __init__(self, flags: int) -> None:
        self.flags = flags

    def sequence(self, items: Any) -> str:
        return "".join(self.item(op, av) for op, av in items)

    def item(self, op: Any, av: Any) -> str:
        if self.flags & re.IGNORECASE and op in (sre.LITERAL, sre.NOT_LITERAL, sre.IN):
            # Python's case-insensitive rules differ from RE2's: spell out, for this
            # one character position, exactly the characters Python would accept.
            return _class_of(_members(op, av, self.flags))
        if op is sre.LITERAL:
            return _char(av)
        if op is sre.NOT_LITERAL:
            return "[^" + _char(av) + "]"
        if op is sre.ANY:
            return "(?s:.)" if self.flags & re.DOTALL else "[^\\n]"
        if op is sre.IN:
            return self.char_class(av)
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            return self.repeat(op, av)
        if op is sre.SUBPATTERN:
            return self.group(av)
        if op is sre.BRANCH:
            return "(?:" + "|".join(self.sequence(branch) for branch in av[1]) + ")"
        if op is sre.AT:
            return self.anchor(av)
        raise _Untranslatable(f"{op} has no RE2 equivalent")

    def repeat(self, op: Any, av: Any) -> str:
        low, high, body = av
        if body.getwidth()[0] == 0:
            raise _Untranslatable("a repeat whose body can be empty")
        if low > _RE2_MAX_REPEAT or (high != sre.MAXREPEAT and high > _RE2_MAX_REPEAT):
            raise _Untranslatable("a repeat count RE2 does not allow")
        bounds = f"{{{low},}}" if high == sre.MAXREPEAT else f"{{{low},{high}}}"
        return "(?:" + self.sequence(body) + ")" + bounds + ("?" if op is sre.MIN_REPEAT else "")

    def group(self, av: Any) -> str:
        _group, add, remove, body = av
        saved = self.flags
        self.flags = (self.flags | add) & ~remove
        try:
            return "(?:" + self.sequence(body) + ")"
        finally:
            self.flags = saved

    def anchor(self, where: Any) -> str:
        multiline = bool(self.flags & re.MULTILINE)
        if where is sre.AT_BEGINNING_STRING or (where is sre.AT_BEGINNING and not multiline):
            return "\\A"
        if where is sre.AT_BEGINNING:
            return "(?m:^)"
        if where is sre.AT_END_STRING:
            return "\\z"
        if where is sre.AT_END and multiline:
            return "(?m:$)"
        if where in (sre.AT_BOUNDARY, sre.AT_NON_BOUNDARY) and self.flags & re.ASCII:
            return "\\b" if where is sre.AT_BOUNDARY else "\\B"
        raise _Untranslatable(f"the anchor {where} means something else in RE2")

    def char_class(self, items: Any) -> str:
        negate = False
        ranges: list[tuple[int, int]] = []
        for op, av in items:
            if op is sre.NEGATE:
                negate = True
            elif op is sre.LITERAL:
                ranges.append(_checked(av, av))
            elif op is sre.RANGE:
                ranges.append(_checked(*av))
            elif op is sre.CATEGORY:
                ranges.extend(self.category(av))
            else:
                raise _Untranslatable(f"{op} in a character class")
        if not ranges:
            raise _Untranslatable("an empty character class")
        body = "".join(_range(low, high) for low, high in _merged(ranges))
        return ("[^" if negate else "[") + body + "]"

    def category(self, category: Any) -> list[tuple[int, int]]:
        positive = _NEGATED.get(category, category)
        if positive not in _ASCII_CLASSES:
            raise _Untranslatable(f"the category {category}")
        members = _ascii_ranges(positive) if self.flags & re.ASCII else _unicode_ranges(positive)
        return _complement(members) if category in _NEGATED else list(members)


def _class_of(ranges: tuple[tuple[int, int], ...]) -> str:
    if not ranges:
        raise _Untranslatable("a character position nothing can match")
    return "[" + "".join(_range(low, high) for low, high in ranges) + "]"


_MEMBER_FLAGS = re.IGNORECASE | re.ASCII
"""The flags that change which characters a literal or a class matches."""


def _members(op: Any, av: Any, flags: int) -> tuple[tuple[int, int], ...]:
    """The code points one character node matches, found by Python's own engine.

    Surrogates are left out; a node that treats U+FFFD and the surrogates
    differently is refused (RE2 sees a surrogate as U+FFFD).
    """
    key = (str(op), repr(av), flags & _MEMBER_FLAGS)
    members = _MEMBERS.get(key)
    if members is None:
        members = _MEMBERS[key] = _scan_members(op, av, key[2])
    return members


_MEMBERS: dict[tuple[str, str, int], tuple[tuple[int, int], ...]] = {}
"""A memo of ``_members``: the same node under the same flags always has the same members."""


def _scan_members(op: Any, av: Any, flags: int) -> tuple[tuple[int, int], ...]:
    state = sre_parse.State()
    node = sre_parse.SubPattern(state, [(op, av)])
    runs = sre_parse.SubPattern(state, [(sre.MAX_REPEAT, (1, sre.MAXREPEAT, node))])
    pattern = sre_compile.compile(runs, flags | re.UNICODE if not flags & re.ASCII else flags)
    ranges = [(match.start(), match.end() - 1) for match in pattern.finditer(_code_space())]
    inside = [
        (max(low, 0xD800), min(high, 0xDFFF)) for low, high in ranges if low <= 0xDFFF and high >= 0xD800
    ]
    surrogates = sum(high - low + 1 for low, high in inside)
    replacement = any(low <= _REPLACEMENT <= high for low, high in ranges)
    if surrogates not in (0, 0x800) or (surrogates == 0x800) != replacement:
        raise _Untranslatable("U+FFFD and the surrogates are matched differently")
    return tuple(_without_surrogates(ranges))


@lru_cache(maxsize=1)
def _code_space() -> str:
    """Every code point, in order (about 4 MiB, built once)."""
    return "".join(map(chr, range(0x110000)))


def _char(code: int) -> str:
    _checked(code, code)
    return _range(code, code)


def _checked(low: int, high: int) -> tuple[int, int]:
    """Refuse code points RE2 sees differently: surrogates and U+FFFD (what they become)."""
    if (low <= 0xDFFF and high >= 0xD800) or low <= _REPLACEMENT <= high:
        raise _Untranslatable("a surrogate or U+FFFD in the pattern")
    return low, high


def _range(low: int, high: int) -> str:
    if low == high:
        return f"\\x{{{low:x}}}"
    return f"\\x{{{low:x}}}-\\x{{{high:x}}}"


def _merged(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for low, high in sorted(ranges):
        if merged and low <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], high))
        else:
            merged.append((low, high))
    return merged


def _complement(ranges: tuple[tuple[int, int], ...]) -> list[tuple[int, int]]:
    """Code points not in ``ranges``, surrogates left out (RE2 never sees them)."""
    result: list[tuple[int, int]] = []
    start = 0
    for low, high in _merged(list(ranges)):
        if low > start:
            result.append((start, low - 1))
        start = high + 1
    if start <= 0x10FFFF:
        result.append((start, 0x10FFFF))
    return _without_surrogates(result)


def _without_surrogates(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """``ranges`` with the surrogates U+D800..U+DFFF cut out (RE2 never sees them)."""
    clipped: list[tuple[int, int]] = []
    for low, high in ranges:
        if high < 0xD800 or low > 0xDFFF:
            clipped.append((low, high))
            continue
        if low < 0xD800:
            clipped.append((low, 0xD7FF))
        if high > 0xDFFF:
            clipped.append((0xE000, high))
    return clipped


@cache
def _ascii_ranges(category: Any) -> tuple[tuple[int, int], ...]:
    pattern = re.compile(f"[{_ASCII_CLASSES[category]}]+")
    text = "".join(map(chr, range(128)))
    return tuple((match.start(), match.end() - 1) for match in pattern.finditer(text))


@cache
def _unicode_ranges(category: Any) -> tuple[tuple[int, int], ...]:
    """The code points Python's ``re`` puts in ``\\d``/``\\s``/``\\w``, as ranges.

    Computed by Python's own engine over the whole code space, so the RE2 class has
    exactly the same members (none of them is a surrogate or U+FFFD).
    """
    pattern = re.compile(_UNICODE_SOURCE[category])
    return tuple((match.start(), match.end() - 1) for match in pattern.finditer(_code_space()))


def unbounded_patterns(sources: tuple[str, ...]) -> tuple[str, ...]:
    """The patterns among ``sources`` that only Python's backtracking engine can run
    and whose matches have no length bound: on a long turn they may be quadratic or
    worse, so evaluation charges them as quadratic. Refuse or warn at publish time."""
    found: list[str] = []
    for source in sources:
        if compile_pattern(source, re.compile(source)).engine == "unbounded":
            found.append(source)
    return tuple(found)


def warm_up() -> None:
    """Build the Unicode class tables the RE2 translation needs (0.15-0.3 s of CPU, once).

    Loading the first pack whose patterns use ``\\d``, ``\\w`` or ``\\s`` builds them
    otherwise; call this at start-up so that work is not done on a live event loop.
    Under ``(?i)`` each distinct letter or class costs one more scan (about 16 ms), the
    first time a pack uses it.
    """
    for category in _UNICODE_SOURCE:
        _unicode_ranges(category)
