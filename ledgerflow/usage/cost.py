"""What tokens cost, from a model's prices per 1,000 input and output tokens (pure).

Usage windows count every turn's tokens together: a window does not say how many were
input (user, tool) and how many output (assistant). So a window's cost is a range — every
token at the lower known price to every token at the higher one; the two are equal when
the prices are, or when only one price is known. Unknown prices: no cost (None).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

COST_DECIMALS = 6
PER = 1000


@dataclass(frozen=True, slots=True)
class CostRange:
    low: float
    high: float

    def to_json(self) -> dict[str, float]:
        return {"low": self.low, "high": self.high}


def cost_range(tokens: float, input_per_1k: float | None, output_per_1k: float | None) -> CostRange | None:
    """The cost of ``tokens`` at the model's prices, or None when neither price is known — or when
    it is no finite number (a price written to ``models.audit`` from outside, past the registry's
    bound: an answer carrying infinity is no JSON, and every later read of the tenant failed)."""
    known = [p for p in (input_per_1k, output_per_1k) if p is not None]
    if not known:
        return None
    low, high = min(known), max(known)
    found = CostRange(round(tokens * low / PER, COST_DECIMALS), round(tokens * high / PER, COST_DECIMALS))
    if not (math.isfinite(found.low) and math.isfinite(found.high)):
        return None
    return found
