"""PII and secret detectors: pure functions from text to character spans.

Every detector returns a tuple of ``(start, end)`` spans (half-open character
offsets into the text it was given), sorted by start. Spans of different kinds
of secret may overlap; evaluation merges spans before reporting them. The
regular expressions are compiled once at import; checksums (Luhn, ISO 7064
mod-97) weed out digit runs that merely look like cards or IBANs.

What each detector finds, and deliberately does not, is documented in
``docs/policy.md`` ("PII detectors").
"""

from __future__ import annotations

import re
import string
from bisect import bisect_left
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType
from typing import Protocol

from ledgerflow.policy import budget as cost
from ledgerflow.policy.budget import WorkMeter, unmetered

Span = tuple[int, int]

# Most patterns begin with a consuming character class and check the character
# before the match with a lookbehind placed *after* it: a leading lookbehind
# stops the regex engine from skipping ahead by first character, which costs
# several microseconds per 200 characters.

# -- email -------------------------------------------------------------------
# ASCII addresses with a dotted domain and an alphabetic TLD: ``a@b`` is not an
# email, ``first.last+tag@mail.example.co.uk`` is. The search is anchored on
# each "@": the domain is matched forwards, the local part backwards (at most
# 64 characters, from its first letter or digit, not ending with a dot).
_EMAIL_DOMAIN = re.compile(
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}(?![A-Za-z0-9_-])",
    re.ASCII,
)
# The local part, matched backwards (on the reversed text before the "@").
_EMAIL_LOCAL_REVERSED = re.compile(r"[A-Za-z0-9._%+-]{1,65}", re.ASCII)
_EMAIL_LOCAL_MAX = 64
# The characters a domain can span (what the domain regex may scan after an "@").
_EMAIL_DOMAIN_REACH = re.compile(r"[A-Za-z0-9.-]*", re.ASCII)

# -- phone -------------------------------------------------------------------
# International: a leading '+', a country code and groups of digits separated
# by single spaces, dots or dashes (an area code may be in parentheses); 8 to
# 15 digits in all (E.164). North American: (NXX) NXX-XXXX or NXX-NXX-XXXX
# with one consistent separator, optionally preceded by "1 " / "1-" / "1.".
# Bare digit runs, dates (2024-01-15), versions (10.0.19041) and order numbers
# are not phones. Possessive quantifiers keep the international pattern linear:
# without them a long digit run after "+" backtracks through every way of
# splitting it into groups (milliseconds per "+").
_PHONE_INTL = re.compile(
    r"\+(?<![\w+]\+)[1-9]\d{0,2}+(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}+){1,6}+(?![\w-]|\.\d)",
    re.ASCII,
)
_PHONE_NANP = re.compile(
    r"[(2-9]"
    r"(?:(?<=\()[2-9]\d{2}\)[ ]?\d{3}[ .-]\d{4}|(?<=[2-9])\d{2}([ .-])\d{3}\1\d{4})"
    r"(?![\w-]|[./]\d)",
    re.ASCII,
)
_NANP_TRUNK = re.compile(r"1[ .-]?\Z")
_PHONE_BOUNDARY = frozenset(".+/-_")
_PHONE_MIN_DIGITS = 8
_PHONE_MAX_DIGITS = 15

# -- payment card --------------------------------------------------------------
# 13-19 digits, either as one run or in the printed groupings (4-4-4-4[-1..3],
# Amex 4-6-5) with one consistent separator (space or dash); Luhn must pass.
_CARD = re.compile(r"\d(?<![\d-]\d)\d{3}(?:[ -]?\d){9,15}(?!\d)", re.ASCII)
_CARD_GROUPS = ((4, 4, 4, 4), (4, 6, 5))
_LUHN_DOUBLED = str.maketrans("0123456789", "0246813579")

# -- IBAN ----------------------------------------------------------------------
# Country code, two check digits, then the BBAN, compact or in groups of four
# separated by single spaces. Validated by length (per country, where known)
# and the ISO 7064 mod-97 checksum. The match starts at the first check digit
# (the country code is checked by the lookbehind): the span starts 2 earlier.
_IBAN = re.compile(
    r"\d(?<=(?<![A-Za-z0-9])[A-Za-z]{2}\d)\d(?: ?[A-Za-z0-9]){11,30}",
    re.ASCII,
)
# "A" → "10" … "Z" → "35" for the mod-97 check.
_IBAN_LETTERS = {ord(letter): str(index + 10) for index, letter in enumerate(string.ascii_uppercase)}
# Registered IBAN lengths (SWIFT IBAN registry). Countries not listed are
# accepted with any length from 15 to 34 if the checksum holds.
_IBAN_LENGTH_TABLE = (
    "AD:24 AE:23 AL:28 AT:20 AZ:28 BA:20 BE:16 BG:22 BH:22 BI:27 BR:29 "
    "BY:28 CH:21 CR:22 CY:28 CZ:24 DE:22 DJ:27 DK:18 DO:28 EE:20 EG:29 "
    "ES:24 FI:18 FO:18 FR:27 GB:22 GE:22 GI:23 GL:18 GR:27 GT:28 HR:21 "
    "HU:28 IE:22 IL:23 IQ:23 IS:26 IT:27 JO:30 KW:30 KZ:20 LB:28 LC:32 "
    "LI:21 LT:20 LU:20 LV:21 LY:25 MC:27 MD:24 ME:22 MK:19 MR:27 MT:31 "
    "MU:30 NL:18 NO:15 PK:24 PL:28 PS:29 PT:25 QA:29 RO:24 RS:22 RU:33 "
    "SA:24 SC:31 SD:18 SE:24 SI:19 SK:24 SM:27 ST:25 SV:28 TL:23 TN:24 "
    "TR:26 UA:29 VA:22 VG:24 XK:20"
)
_IBAN_LENGTHS: Mapping[str, int] = MappingProxyType(
    {entry[:2]: int(entry[3:]) for entry in _IBAN_LENGTH_TABLE.split(" ")}
)
# The first N characters of an IBAN candidate, single spaces allowed between them.
_IBAN_PREFIXES: Mapping[int, re.Pattern[str]] = MappingProxyType(
    {
        length: re.compile(rf"[A-Za-z0-9](?: ?[A-Za-z0-9]){{{length - 1}}}", re.ASCII)
        for length in set(_IBAN_LENGTHS.values())
    }
)

# -- secrets -------------------------------------------------------------------
# (literals that must occur, pattern): a pattern runs only when one of its
# literals is in the text, so clean text costs a few substring tests. Every
# pattern has a bounded width except the JWT one, whose unbounded runs stop at
# the first character outside [A-Za-z0-9_-] (so the runs tried from different
# starts do not overlap): each is linear in the text. PEM keys are found by
# ``_find_pem`` below, not by a regex.
_SECRETS: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...] = tuple(
    (literals, re.compile(source, re.ASCII))
    for literals, source in (
        # AWS access key ids (long-term AKIA, temporary ASIA).
        (("AKIA", "ASIA"), r"A(?<![A-Za-z0-9]A)(?:KIA|SIA)[0-9A-Z]{16}(?![A-Za-z0-9])"),
        # GitHub tokens: classic (ghp_, gho_, ghu_, ghs_, ghr_) and fine-grained.
        (
            ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
            r"g(?<![A-Za-z0-9_]g)h[pousr]_[A-Za-z0-9]{36,255}(?![A-Za-z0-9_])",
        ),
        (("github_pat_",), r"g(?<![A-Za-z0-9_]g)ithub_pat_[A-Za-z0-9_]{22,255}"),
        # Slack tokens (xoxb-, xoxp-, xoxa-, xoxr-, xoxs-, xoxo-).
        (("xox",), r"x(?<![A-Za-z0-9]x)ox[abposr]-[A-Za-z0-9-]{10,250}"),
        # Generic "sk-" API keys (OpenAI-style, incl. sk-proj-...) and Stripe keys.
        (("sk-",), r"s(?<![A-Za-z0-9_-]s)k-[A-Za-z0-9_-]{20,250}"),
        (("k_live_", "k_test_"), r"[sr](?<![A-Za-z0-9_][sr])k_(?:live|test)_[A-Za-z0-9]{16,250}"),
        # JWT-looking strings: base64url JSON header and payload, optional signature.
        (
            ("eyJ",),
            r"e(?<![A-Za-z0-9_-]e)yJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*",
        ),
    )
)


def luhn_valid(digits: str) -> bool:
    """Return True if the decimal string passes the Luhn checksum."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    reverse = digits[::-1]
    doubled = reverse[1::2].translate(_LUHN_DOUBLED)
    return (sum(map(int, reverse[0::2])) + sum(map(int, doubled))) % 10 == 0


def iban_valid(iban: str) -> bool:
    """Return True if ``iban`` (spaces allowed, any case) has a valid length and mod-97."""
    compact = iban.replace(" ", "").upper()
    if not (15 <= len(compact) <= 34) or not compact.isascii() or not compact.isalnum():
        return False
    country, check = compact[:2], compact[2:4]
    if not country.isalpha() or not check.isdigit():
        return False
    expected = _IBAN_LENGTHS.get(country)
    if expected is not None and len(compact) != expected:
        return False
    rearranged = compact[4:] + compact[:4]
    return int(rearranged.translate(_IBAN_LETTERS)) % 97 == 1


# PEM private keys: "-----BEGIN <LABEL>PRIVATE KEY-----", where <LABEL> is zero or
# more words of [A-Z0-9] each followed by one space ("RSA ", "ENCRYPTED "), and the
# whole block when "-----END <LABEL>PRIVATE KEY-----" (the same label) follows after
# a body of base64, header and whitespace characters. This is the regex
#   -----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----(?:[A-Za-z0-9+/=:,\-\s]*?-----END \1PRIVATE KEY-----)?
# evaluated without backtracking: the regex let every header scan the rest of the
# text for its END line (the body characters include every character of a header),
# so a turn of repeated headers cost quadratic time. Here each END line is parsed
# once, and each header finds its END with a binary search.
_PEM_BEGIN = "-----BEGIN "
_PEM_END = "-----END "
_PEM_PRIVATE = "PRIVATE "
_PEM_TAIL = "PRIVATE KEY-----"
# Label words: each ends at its only space, so matching them never backtracks.
_PEM_WORDS = re.compile(r"(?:[A-Z0-9]+ )*", re.ASCII)
_PEM_BODY = re.compile(r"[A-Za-z0-9+/=:,\-\s]*", re.ASCII)


class Detector(Protocol):
    """A detector: text (and an optional work meter) → sorted spans."""

    def __call__(self, text: str, meter: WorkMeter | None = None) -> tuple[Span, ...]: ...


def find_emails(text: str, meter: WorkMeter | None = None) -> tuple[Span, ...]:
    """Spans of email addresses (ASCII, dotted domain, alphabetic TLD)."""
    meter = meter if meter is not None else unmetered()
    meter.charge(cost.EMAIL_PER_CHAR * len(text))
    found: list[Span] = []
    at = text.find("@")
    while at != -1:
        # The domain regex backtracks label by label: charge the run it may cover.
        reach = _EMAIL_DOMAIN_REACH.match(text, at + 1).end()  # type: ignore[union-attr]
        meter.charge(cost.EMAIL_PER_AT + cost.EMAIL_DOMAIN_PER_CHAR * (reach - at))
        domain = _EMAIL_DOMAIN.match(text, at)
        if domain is not None:
            before = text[max(0, at - _EMAIL_LOCAL_MAX - 1) : at][::-1]
            local = _EMAIL_LOCAL_REVERSED.match(before)
            if local is not None and local.end() <= _EMAIL_LOCAL_MAX:
                start = at - local.end()
                # Punctuation before the address ("(.", "--") is not part of it.
                while start < at and not text[start].isalnum():
                    start += 1
                if start < at and text[at - 1] != ".":
                    found.append((start, domain.end()))
        at = text.find("@", at + 1)
    return tuple(found)


def find_phones(text: str, meter: WorkMeter | None = None) -> tuple[Span, ...]:
    """Spans of international (+CC …) and North American phone numbers."""
    meter = meter if meter is not None else unmetered()
    found: list[Span] = []
    if "+" in text:
        meter.charge(len(text) + cost.PHONE_PER_PLUS * text.count("+"))
        for match in _PHONE_INTL.finditer(text):
            meter.charge(cost.PHONE_CANDIDATE)
            digits = sum(map(str.isdigit, match.group()))
            if _PHONE_MIN_DIGITS <= digits <= _PHONE_MAX_DIGITS:
                found.append(match.span())
    international = tuple(found)
    meter.charge(cost.PHONE_PER_DIGIT * _digits_and_parentheses(text, meter))
    for match in _PHONE_NANP.finditer(text):
        meter.charge(cost.PHONE_CANDIDATE)
        core, end = match.span()
        trunk = _NANP_TRUNK.search(text, max(0, core - 2), core)
        starts = (trunk.start(), core) if trunk is not None else (core,)
        start = next((s for s in starts if _phone_may_start(text, s)), None)
        if start is None:
            continue
        if not _overlaps_any(start, end, international):
            found.append((start, end))
    if international and len(found) > len(international):
        found.sort()
    return tuple(found)


def _digits_and_parentheses(text: str, meter: WorkMeter) -> int:
    """How many ASCII digits and "(" the text has: where the digit scans can start."""
    meter.charge(cost.DIGIT_SCAN_PER_CHAR * len(text))
    return _count_starts(text)


@lru_cache(maxsize=4)
def _count_starts(text: str) -> int:
    return len(text) - len(text.translate(_NOT_STARTS))


_NOT_STARTS = str.maketrans("", "", "0123456789(")


def _overlaps_any(start: int, end: int, spans: tuple[Span, ...]) -> bool:
    """True if [start, end) overlaps one of ``spans`` (sorted, non-overlapping)."""
    index = bisect_left(spans, (end, end))
    return index > 0 and spans[index - 1][1] > start


def _phone_may_start(text: str, start: int) -> bool:
    if start == 0:
        return True
    before = text[start - 1]
    return not (before.isalnum() or before in _PHONE_BOUNDARY)


def find_payment_cards(text: str, meter: WorkMeter | None = None) -> tuple[Span, ...]:
    """Spans of 13-19 digit card numbers (runs or printed groups) that pass Luhn."""
    meter = meter if meter is not None else unmetered()
    meter.charge(cost.CARD_PER_DIGIT * _digits_and_parentheses(text, meter))
    found: list[Span] = []
    for match in _CARD.finditer(text):
        meter.charge(cost.CARD_CANDIDATE)
        span = _card_span(match.group(), match.start())
        if span is not None:
            found.append(span)
    return tuple(found)


def _card_span(candidate: str, start: int) -> Span | None:
    """The span of a valid card in ``candidate``: a plain run, or a known grouping."""
    if candidate.isdigit():
        digits = candidate
    elif not (" " in candidate and "-" in candidate):
        groups = candidate.split(" " if " " in candidate else "-")
        lengths = tuple(len(group) for group in groups)
        if lengths[:4] == _CARD_GROUPS[0] and len(lengths) == 5 and lengths[4] <= 3:
            digits = "".join(groups)
            if not _card_digits_valid(digits):
                # A 4-4-4-4 card followed by an unrelated short number.
                candidate, digits = candidate[:19], "".join(groups[:4])
        elif lengths not in _CARD_GROUPS:
            return None
        else:
            digits = "".join(groups)
    else:
        return None
    if not _card_digits_valid(digits):
        return None
    return start, start + len(candidate)


def _card_digits_valid(digits: str) -> bool:
    return 13 <= len(digits) <= 19 and digits.strip("0") != "" and luhn_valid(digits)


def find_ibans(text: str, meter: WorkMeter | None = None) -> tuple[Span, ...]:
    """Spans of IBANs (compact or grouped by four) with a valid length and mod-97."""
    meter = meter if meter is not None else unmetered()
    meter.charge(cost.IBAN_PER_DIGIT * _digits_and_parentheses(text, meter))
    found: list[Span] = []
    for match in _IBAN.finditer(text):
        meter.charge(cost.IBAN_CANDIDATE)
        start = match.start() - 2
        candidate = text[start : match.end()]
        expected = _IBAN_LENGTHS.get(candidate[:2].upper())
        if expected is not None:
            # The pattern is greedy: it may have run into a following word.
            # Keep the country's number of characters (spaces not counted).
            prefix = _IBAN_PREFIXES[expected].match(candidate)
            if prefix is None:
                continue
            candidate = prefix.group()
        end = start + len(candidate)
        if end < len(text) and text[end].isascii() and text[end].isalnum():
            continue
        if iban_valid(candidate):
            found.append((start, end))
    return tuple(found)


def find_secrets(text: str, meter: WorkMeter | None = None) -> tuple[Span, ...]:
    """Spans of credential-shaped strings: AWS key ids, GitHub/Slack/sk- tokens, PEM keys, JWTs."""
    meter = meter if meter is not None else unmetered()
    meter.charge(cost.SECRET_PER_CHAR * len(text))
    found: list[Span] = []
    for literals, pattern in _SECRETS:
        for literal in literals:
            if literal in text:
                meter.charge(cost.SECRET_PER_CHAR * len(text))
                for match in pattern.finditer(text):
                    meter.charge(cost.SECRET_CANDIDATE)
                    found.append(match.span())
                break
    if _PEM_BEGIN in text:
        found.extend(_find_pem(text, meter))
    if len(found) > 1:
        found.sort()
    return tuple(found)


def _find_pem(text: str, meter: WorkMeter) -> list[Span]:
    """PEM private key headers, and whole blocks when their END line follows (see above).

    Linear in the text (plus a binary search per header): label words and END
    lines are each parsed once, and the body run after a header is scanned once
    for all the headers inside it.
    """
    found: list[Span] = []
    ends: dict[str, list[int]] | None = None
    run_from, run_end = 0, 0
    begin = text.find(_PEM_BEGIN)
    while begin != -1:
        meter.charge(cost.SECRET_CANDIDATE)
        label_start = begin + len(_PEM_BEGIN)
        label_end = _pem_label_end(text, label_start, meter)
        if label_end is None:
            begin = text.find(_PEM_BEGIN, begin + 1)
            continue
        header_end = label_end + len(_PEM_TAIL)
        # Step 1. The body may extend to the first character outside the body class.
        if not run_from <= header_end < run_end:
            run_from = header_end
            run_end = _PEM_BODY.match(text, header_end).end()  # type: ignore[union-attr]
            meter.charge(cost.SECRET_PER_CHAR * (run_end - header_end))
        # Step 2. The first END line with the same label that starts inside the body.
        if ends is None:
            ends = _pem_end_lines(text, meter)
        label = text[label_start:label_end]
        positions = ends.get(label, ())
        index = bisect_left(positions, header_end)
        end = header_end
        if index < len(positions) and positions[index] < run_end:
            end = positions[index] + len(_PEM_END) + len(label) + len(_PEM_TAIL)
        found.append((begin, end))
        begin = text.find(_PEM_BEGIN, end)
    return found


def _pem_label_end(text: str, start: int, meter: WorkMeter) -> int | None:
    """Where "PRIVATE KEY-----" starts after the label words at ``start``, or None.

    The label words are matched greedily; the only place "PRIVATE KEY-----" can
    follow them is the last word, "PRIVATE ", followed by "KEY-----".
    """
    words_end = _PEM_WORDS.match(text, start).end()  # type: ignore[union-attr]
    meter.charge(cost.SECRET_PER_CHAR * (words_end - start))
    tail = words_end - len(_PEM_PRIVATE)
    if tail < start or not text.startswith(_PEM_TAIL, tail):
        return None
    if tail > start and text[tail - 1] != " ":
        return None
    return tail


def _pem_end_lines(text: str, meter: WorkMeter) -> dict[str, list[int]]:
    """Label → ascending start positions of "-----END <label>PRIVATE KEY-----" lines."""
    meter.charge(cost.SECRET_PER_CHAR * len(text))
    ends: dict[str, list[int]] = {}
    at = text.find(_PEM_END)
    while at != -1:
        meter.charge(cost.SECRET_CANDIDATE)
        label_start = at + len(_PEM_END)
        label_end = _pem_label_end(text, label_start, meter)
        if label_end is not None:
            ends.setdefault(text[label_start:label_end], []).append(at)
        at = text.find(_PEM_END, at + 1)
    return ends


DETECTORS: Mapping[str, Detector] = MappingProxyType(
    {
        "email": find_emails,
        "phone": find_phones,
        "payment_card": find_payment_cards,
        "iban": find_ibans,
        "secret": find_secrets,
    }
)
"""Detector name (as used in a rule's ``pii`` condition) → detector function."""
