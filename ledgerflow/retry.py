"""Capped exponential backoff: the wait before each retry, for every retry loop of ledgerflow.

``delay(n, first, cap)`` is ``first``, ``2·first``, ``4·first`` … for n = 1, 2, 3 …, never above
``cap``; ``delays(first, cap)`` yields them in order for a loop that counts nothing itself.
Pure: a caller that wants jitter draws the fraction and passes it in, and does its own sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count

# 2^64 times any sane first delay is past any sane cap; bounding the exponent keeps a retry
# loop that ran for days from overflowing a float (2.0 ** 1100 raises OverflowError).
_MAX_DOUBLINGS = 64


def delay(attempt: int, first: float, cap: float, jitter: float = 0.0) -> float:
    """Seconds to wait before retry ``attempt`` (1-based; below 1 counts as 1): ``first·2^(attempt-1)``
    capped at ``cap``, stretched by the fraction ``jitter`` in [0, 1) but never past ``cap``."""
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be a fraction in [0, 1), not {jitter}")
    doublings = min(max(attempt - 1, 0), _MAX_DOUBLINGS)
    base = min(cap, first * 2.0**doublings)
    return float(min(cap, base * (1.0 + jitter)))


def delays(first: float, cap: float) -> Iterator[float]:
    """``delay(1)``, ``delay(2)``, … without end (no jitter)."""
    return (delay(attempt, first, cap) for attempt in count(1))


RETRY_STATUSES = frozenset({429, 502, 503, 504})
"""HTTP statuses that mean "later" (too many requests, a gateway or the edge's dependency out):
the client library and ``ledgerflow tail`` retry them, waiting ``Retry-After``."""
