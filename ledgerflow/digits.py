"""Is this text a plain decimal number? One rule for every place that reads one from outside
(ports, offsets, versions, header and query values)."""

from __future__ import annotations

import sys

__all__ = ["MAX_DIGITS", "ascii_digits"]

MAX_DIGITS = sys.int_info.default_max_str_digits
"""Past Python's default limit (4300 digits) ``int()`` raises instead of converting."""


def ascii_digits(text: str, max_digits: int = MAX_DIGITS) -> bool:
    """True when ``text`` is 1 to ``max_digits`` of the ASCII digits 0-9, nothing else: no sign,
    space, underscore or other script's digit (``str.isdigit`` alone takes '²' and '٣', and
    ``int()`` takes ' 1', '+1' and '1_0'), so ``int(text)`` cannot fail on it."""
    return 0 < len(text) <= max_digits and text.isascii() and text.isdigit()
