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
from collections.abc import Callable, Mapping
from types import MappingProxyType

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
# literals is in the text, so clean text costs a few substring tests.
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
        # PEM private keys: the header, and the whole block when it is complete.
        (
            ("-----BEGIN",),
            (
                r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY-----"
                r"(?:[A-Za-z0-9+/=:,\-\s]*?-----END \1PRIVATE KEY-----)?"
            ),
        ),
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


def find_emails(text: str) -> tuple[Span, ...]:
    """Spans of email addresses (ASCII, dotted domain, alphabetic TLD)."""
    found: list[Span] = []
    at = text.find("@")
    while at != -1:
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


def find_phones(text: str) -> tuple[Span, ...]:
    """Spans of international (+CC …) and North American phone numbers."""
    found: list[Span] = []
    if "+" in text:
        for match in _PHONE_INTL.finditer(text):
            digits = sum(map(str.isdigit, match.group()))
            if _PHONE_MIN_DIGITS <= digits <= _PHONE_MAX_DIGITS:
                found.append(match.span())
    international = tuple(found)
    for match in _PHONE_NANP.finditer(text):
        core, end = match.span()
        trunk = _NANP_TRUNK.search(text, max(0, core - 2), core)
        starts = (trunk.start(), core) if trunk is not None else (core,)
        start = next((s for s in starts if _phone_may_start(text, s)), None)
        if start is None:
            continue
        if not any(s < end and start < e for s, e in international):
            found.append((start, end))
    if international and len(found) > len(international):
        found.sort()
    return tuple(found)


def _phone_may_start(text: str, start: int) -> bool:
    if start == 0:
        return True
    before = text[start - 1]
    return not (before.isalnum() or before in _PHONE_BOUNDARY)


def find_payment_cards(text: str) -> tuple[Span, ...]:
    """Spans of 13-19 digit card numbers (runs or printed groups) that pass Luhn."""
    found: list[Span] = []
    for match in _CARD.finditer(text):
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


def find_ibans(text: str) -> tuple[Span, ...]:
    """Spans of IBANs (compact or grouped by four) with a valid length and mod-97."""
    found: list[Span] = []
    for match in _IBAN.finditer(text):
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


def find_secrets(text: str) -> tuple[Span, ...]:
    """Spans of credential-shaped strings: AWS key ids, GitHub/Slack/sk- tokens, PEM keys, JWTs."""
    found: list[Span] = []
    for literals, pattern in _SECRETS:
        for literal in literals:
            if literal in text:
                found.extend(m.span() for m in pattern.finditer(text))
                break
    if len(found) > 1:
        found.sort()
    return tuple(found)


DETECTORS: Mapping[str, Callable[[str], tuple[Span, ...]]] = MappingProxyType(
    {
        "email": find_emails,
        "phone": find_phones,
        "payment_card": find_payment_cards,
        "iban": find_ibans,
        "secret": find_secrets,
    }
)
"""Detector name (as used in a rule's ``pii`` condition) → detector function."""
