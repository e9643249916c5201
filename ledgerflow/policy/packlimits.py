"""Bounds on one rule pack's patterns, so that compiling the largest pack allowed stays cheap.

Compiling a pattern (``patterns.compile_pattern``) may build an RE2 program of up to
8 MiB, and each character a pattern matches case-insensitively costs a scan of the
whole code space the first time it is seen. Unbounded, a 256 KiB pack took minutes of
CPU and gigabytes. So a pack is refused (one line, before anything is compiled) when it has

- more than ``MAX_PATTERNS`` patterns, or more than ``MAX_PATTERN_CHARS`` characters of
  pattern source in all;
- more than ``MAX_PATTERN_POSITIONS`` character positions once repeats are spelled out
  (``\\w{300}`` is 300: what RE2 builds a program from);
- more than ``MAX_CASELESS_CHARACTERS`` distinct characters or classes matched
  case-insensitively;

and, while compiling, when its RE2 programs together exceed ``MAX_RE2_BYTES``
(``RE2_BYTES_PER_INSTRUCTION`` per instruction, forward and reverse programs).
docs/policy.md gives the figures measured for the largest pack these allow.
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any, NoReturn

from ledgerflow.errors import ValidationError
from ledgerflow.policy.patterns import PatternMatcher

MAX_PATTERNS = 64
MAX_PATTERN_CHARS = 8192
MAX_PATTERN_POSITIONS = 2048
MAX_CASELESS_CHARACTERS = 32
MAX_RE2_BYTES = 16 << 20
RE2_BYTES_PER_INSTRUCTION = 16
_HINT = "Fix the rule pack and publish it again (limits: docs/policy.md)."
_REPEATS = (sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT))
_CHARACTERS = (sre.LITERAL, sre.NOT_LITERAL, sre.IN)


def pack_patterns(doc: dict[str, Any]) -> list[str]:
    """Every pattern source of a (schema-valid) pack document, in rule order."""
    return [source for rule in doc["rules"] for source in rule["when"].get("patterns", ())]


def check_pattern_limits(doc: dict[str, Any]) -> None:
    """Refuse a pack over the count, size, positions or case-insensitive limits (no compiling)."""
    sources = pack_patterns(doc)
    if len(sources) > MAX_PATTERNS:
        _refuse(f"it has {len(sources)} patterns; at most {MAX_PATTERNS} are allowed")
    chars = sum(len(source) for source in sources)
    if chars > MAX_PATTERN_CHARS:
        _refuse(f"its patterns are {chars} characters long in all; at most {MAX_PATTERN_CHARS}")
    positions = 0
    caseless: set[tuple[str, str, int]] = set()
    for source in sources:
        try:
            parsed = sre_parse.parse(source)
        except (re.error, OverflowError):
            continue  # compiling names the pattern and why it does not compile
        except RecursionError:
            _refuse(f"the pattern {source[:40]!r}... nests too deeply")
        positions += _positions(parsed, parsed.state.flags, caseless)
        if positions > MAX_PATTERN_POSITIONS:
            _refuse(
                f"its patterns spell out more than {MAX_PATTERN_POSITIONS} character positions "
                "(repeats counted out)"
            )
    if len(caseless) > MAX_CASELESS_CHARACTERS:
        _refuse(
            f"its patterns match {len(caseless)} distinct characters or classes case-insensitively; "
            f"at most {MAX_CASELESS_CHARACTERS}"
        )


def _positions(items: Any, flags: int, caseless: set[tuple[str, str, int]]) -> int:
    """Character positions of ``items`` with each repeat written out as RE2 builds it
    (``x{n,m}``: m copies; ``x{n,}``: n + 1); collects the case-insensitive character nodes."""
    total = 0
    for op, av in items:
        if op in _REPEATS:
            low, high, body = av
            copies = low + 1 if high == sre.MAXREPEAT else high
            total += max(1, copies) * _positions(body, flags, caseless)
        elif op is sre.SUBPATTERN:
            _group, add, remove, body = av
            total += _positions(body, (flags | add) & ~remove, caseless)
        elif op is sre.BRANCH:
            total += sum(_positions(branch, flags, caseless) for branch in av[1])
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            total += _positions(av[1], flags, caseless)
        elif op is sre.GROUPREF_EXISTS:
            _group, yes, no = av
            total += _positions(yes, flags, caseless) + (_positions(no, flags, caseless) if no else 0)
        else:
            if flags & re.IGNORECASE and op in _CHARACTERS:
                caseless.add((str(op), repr(av), flags & (re.IGNORECASE | re.ASCII)))
            total += 1
        if total > MAX_PATTERN_POSITIONS:
            return total  # already over: no need to count (or multiply) further
    return total


class Re2Budget:
    """The RE2 memory a pack's patterns use so far; refuses the pack past ``MAX_RE2_BYTES``."""

    def __init__(self) -> None:
        self.used = 0

    def charged(self, matcher: PatternMatcher) -> PatternMatcher:
        """``matcher``, its RE2 programs counted; ValidationError once the pack is over budget."""
        if matcher.linear is None:
            return matcher
        instructions = max(0, matcher.linear.programsize) + max(0, matcher.linear.reverseprogramsize)
        self.used += instructions * RE2_BYTES_PER_INSTRUCTION
        if self.used > MAX_RE2_BYTES:
            _refuse(
                f"its patterns need more than {MAX_RE2_BYTES >> 20} MiB of RE2 programs "
                f"(the pattern {matcher.source[:40]!r} brings it to {self.used >> 20} MiB)"
            )
        return matcher


def _refuse(problem: str) -> NoReturn:
    raise ValidationError(f"rule pack is too costly to compile: {problem}. {_HINT}")
