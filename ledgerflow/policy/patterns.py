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
- ``bounded``: not translatable, so Python ``re`` runs it, and :func:`backtracking` bounds
  the work from one start position by a constant (``\\bACME-\\d{3,6}\\b``: 16 steps):
  a search is linear in the text, charged by the budget as ``steps`` per position where
  a match can start.
- ``unbounded``: Python ``re`` runs it and the bound grows with the text left after the
  position (one unbounded repeat of a single-path part, with a Unicode ``\\b``, a
  non-multiline ``$``, a lookaround …): ``steps + steps_per_char × r``, quadratic in all,
  so on a long turn it gives ``review``/``evaluation_budget`` instead of a stall.
  :func:`unbounded_patterns` names them.
- refused (:class:`PatternRefused`): Python ``re`` would have to run it and its
  backtracking has no such bound — exponential (``(\\w+\\s?)+$``), quadratic at each
  position (``\\ba*a*b``) or above ``MAX_PATHS`` ways from one position
  (``(?:a|aa){1,60}(?=c)``, whose matches are short but which took 4.4 s on 36
  characters). The rule pack loader refuses the pack, naming the pattern and the reason.

The translation refuses anything whose meaning could differ between the engines,
so a pattern gives the same decisions whichever engine runs it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
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
"""Longest match (in characters) recorded as a pattern's ``width``; a backreference to a group
that can match more is charged as reading the rest of the text."""

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
    """For Python-run patterns: the literal every match starts with (after anchors such as
    ``\\b``); Python's ``re`` does real work only where it occurs."""
    steps: int = 0
    steps_per_char: int = 0
    """For Python-run patterns: from one start position with r characters after it, Python's
    ``re`` reads or checks at most ``steps + steps_per_char × r`` characters (:func:`backtracking`);
    ``steps_per_char`` is 0 exactly for ``bounded`` patterns."""

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
    """Classify ``source`` (already compiled by Python as ``python``) and pick its engine.

    Raises :class:`PatternRefused` (the message is the reason) for a pattern only Python's
    ``re`` can run whose backtracking :func:`backtracking` cannot bound.
    """
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
        bound = backtracking(parsed)
        width = high if high <= MAX_BOUNDED_WIDTH else None
        return PatternMatcher(
            source,
            python,
            "unbounded" if bound.steps.per_char else "bounded",
            None,
            width=width,
            prefix=_literal_prefix(parsed, python.flags),
            steps=bound.steps.const,
            steps_per_char=bound.steps.per_char,
        )
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
    return _members_of(_Node((str(op), repr(av), flags & _MEMBER_FLAGS), op, av))


@dataclass(frozen=True, slots=True)
class _Node:
    """A character node under its flags, equal and hashed by ``key`` (its op, its argument's
    repr and the flags that matter): the argument itself may be a list."""

    key: tuple[str, str, int]
    op: Any = field(compare=False)
    av: Any = field(compare=False)


def _scan_node(node: _Node) -> tuple[tuple[int, int], ...]:
    return _scan_members(node.op, node.av, node.key[2])


MEMBERS_MEMO = 4096
"""Character nodes ``_members`` remembers, the most recently used (the same node under the same
flags always has the same members): every distinct class a pack or a ``POST /v1/policy/validate``
brings is a new entry, so an unbounded memo grew the edge's memory with each hostile document."""
_members_of = lru_cache(maxsize=MEMBERS_MEMO)(_scan_node)  # thread-safe: packs are checked in threads


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


# -- backtracking bound -------------------------------------------------------------

MAX_PATHS = 1000
"""Most ways Python ``re`` may try to match a pattern (or any part of it) from one position.

Every pattern in the shipped packs has at most 6; a literal alternation of 1000 words, or
``\\w{1,999}``, still fits. Exponential shapes pass it at tiny sizes (``(?:a|aa){1,10}``:
about 2,000), so the refusal catches them long before their run time matters."""


class PatternRefused(Exception):
    """A pattern Python's ``re`` would have to run whose backtracking is not bounded
    enough to charge: the message is the one-line reason."""


_EXPONENTIAL = (
    "a repeated group whose body can match in more than one way backtracks exponentially "
    "(as in (a|aa)+ or (\\w+\\s?)+); make the alternatives or the repeats inside it unambiguous"
)
_QUADRATIC = (
    "two parts that can each run to the end of the text (unbounded repeats, or a lookaround "
    "or backreference over one) backtrack against each other, which takes time quadratic in "
    "the text at every position; bound one of them ({0,200}) or make it a single repeat"
)
_EMPTY_BODY = "an unbounded repeat of a part that matches only the empty string; remove the repeat"
_TOO_MANY = (
    f"it can backtrack through more than {MAX_PATHS} ways to match from one position "
    "(nested or ambiguous repeats and alternatives); bound the repeats or simplify the alternatives"
)


@dataclass(frozen=True, slots=True)
class _Linear:
    """``const + per_char × r``, where r is the length of the text after the start position."""

    const: int
    per_char: int = 0

    def __add__(self, other: _Linear) -> _Linear:
        return _Linear(self.const + other.const, self.per_char + other.per_char)

    def times(self, other: _Linear, reason: str) -> _Linear:
        if self.per_char and other.per_char:
            raise PatternRefused(reason)
        return _Linear(self.const * other.const, self.const * other.per_char + self.per_char * other.const)


_ONE = _Linear(1)
_ZERO = _Linear(0)
_REST = _Linear(0, 1)
"""As many as there are characters left: the exits of an unbounded single-path repeat."""


@dataclass(frozen=True, slots=True)
class Backtracking:
    """A bound on what Python ``re`` does from one start position, r characters before the end.

    ``paths``: the ways a part can match there (each a point the rest is tried from);
    ``steps``: the characters read and zero-width checks made in trying all of them,
    the size of the backtracking tree. Both are ``const + per_char × r``.
    """

    paths: _Linear
    steps: _Linear


def backtracking(parsed: Any) -> Backtracking:
    """Bound the backtracking of Python ``re`` on the parse tree ``parsed`` (``sre_parse.parse``).

    Sequence → product of paths (each part is tried from every way the parts before it
    ended); alternation → sum; a repeat ``{m,n}`` of a body with B paths → the sum of B^k
    for k = m..n; an unbounded repeat → one path per character left, allowed only over a
    single-path body; a lookaround or atomic group → one path (Python never backtracks
    into it) but its body's steps. Raises :class:`PatternRefused` when the result would be
    exponential, quadratic per position, or above ``MAX_PATHS`` paths.
    """
    return _sequence(parsed)


def _checked_paths(paths: _Linear) -> _Linear:
    if paths.const > MAX_PATHS or paths.per_char > MAX_PATHS:
        raise PatternRefused(_TOO_MANY)
    return paths


def _sequence(items: Any) -> Backtracking:
    paths, steps = _ONE, _ZERO
    for op, av in items:
        part = _node(op, av, items)
        steps = steps + paths.times(part.steps, _QUADRATIC)
        paths = _checked_paths(paths.times(part.paths, _QUADRATIC))
    return Backtracking(paths, steps)


_SINGLE = Backtracking(_ONE, _ONE)


def _node(op: Any, av: Any, within: Any) -> Backtracking:
    if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN, sre.AT, sre.CATEGORY):
        return _SINGLE
    if op is sre.SUBPATTERN:
        return _sequence(av[3])
    if op is sre.BRANCH:
        paths, steps = _ZERO, _ZERO
        for branch in av[1]:
            found = _sequence(branch)
            paths, steps = _checked_paths(paths + found.paths), steps + _ONE + found.steps
        return Backtracking(paths, steps)
    if op in (sre.ASSERT, sre.ASSERT_NOT):
        return Backtracking(_ONE, _ONE + _sequence(av[1]).steps)
    if op is sre.ATOMIC_GROUP:
        return Backtracking(_ONE, _ONE + _sequence(av).steps)
    if op is sre.GROUPREF:
        # Compares the group's text: as long as the group's longest match.
        high = within.state.groupwidths[av][1]
        return Backtracking(_ONE, _REST if high > MAX_BOUNDED_WIDTH else _Linear(max(high, 1)))
    if op is sre.GROUPREF_EXISTS:
        _group, yes, no = av
        taken = _sequence(yes)
        other = _sequence(no) if no is not None else Backtracking(_ONE, _ZERO)
        return Backtracking(_checked_paths(taken.paths + other.paths), _ONE + taken.steps + other.steps)
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT, sre.POSSESSIVE_REPEAT):
        return _repeat(*av)
    raise PatternRefused(f"it uses {op}, whose backtracking is not analysed")


def _repeat(low: int, high: int, body: Any) -> Backtracking:
    inner = _sequence(body)
    single = inner.paths == _ONE
    consumes = body.getwidth()[0] > 0
    if high == sre.MAXREPEAT and not single:
        raise PatternRefused(_EXPONENTIAL)
    if high == sre.MAXREPEAT and not consumes:
        raise PatternRefused(_EMPTY_BODY)
    if single and consumes and (high == sre.MAXREPEAT or high - low + 1 > MAX_PATHS):
        # At most one iteration per character left, and each iteration end is a path.
        return Backtracking(_ONE + _REST, _REST.times(inner.steps, _QUADRATIC))
    if single:
        return Backtracking(
            _checked_paths(_Linear(high - low + 1)), _Linear(high).times(inner.steps, _QUADRATIC)
        )
    if inner.paths.per_char and high >= 2:
        raise PatternRefused(_QUADRATIC)
    # body^low, then (body (body (...)?)?)? high - low times.
    paths, steps = _ONE, _ZERO
    for _ in range(low):
        steps = steps + paths.times(inner.steps, _QUADRATIC)
        paths = _checked_paths(paths.times(inner.paths, _QUADRATIC))
    tail_paths, tail_steps = _ONE, _ZERO
    for _ in range(high - low):
        tail_steps = inner.steps + inner.paths.times(tail_steps, _QUADRATIC)
        tail_paths = _checked_paths(_ONE + inner.paths.times(tail_paths, _QUADRATIC))
    return Backtracking(
        _checked_paths(paths.times(tail_paths, _QUADRATIC)), steps + paths.times(tail_steps, _QUADRATIC)
    )


def unbounded_patterns(sources: tuple[str, ...]) -> tuple[str, ...]:
    """The patterns among ``sources`` that only Python's backtracking engine can run and
    whose backtracking bound grows with the text (``unbounded``): evaluation charges them
    up to quadratic. Patterns the loader refuses (:class:`PatternRefused`) are left out."""
    found: list[str] = []
    for source in sources:
        try:
            engine = compile_pattern(source, re.compile(source)).engine
        except PatternRefused:
            continue
        if engine == "unbounded":
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
