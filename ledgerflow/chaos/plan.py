"""When each fault strikes: a pure function of the seed, so a run can be repeated exactly.

Every kind asked for is drawn at least once (in a seeded order); the time left is filled with
more faults of random kinds. Gaps are seeded too: the load runs undisturbed between faults, so
each fault lands on a pipeline that is busy, not one still recovering from the previous fault.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Planned:
    """``at_s``: seconds after the load started."""

    at_s: float
    kind: str


def plan(seed: int, duration_s: float, kinds: Sequence[str], gap_s: tuple[float, float]) -> list[Planned]:
    """The faults of a run of ``duration_s`` seconds: each of ``kinds`` at least once, then more
    until the duration is filled; consecutive faults ``gap_s`` (low, high) seconds apart. The first
    fault waits one gap too (the load reaches its pace first). ValueError if ``kinds`` is empty."""
    if not kinds:
        raise ValueError("a chaos run needs at least one fault kind")
    rng = random.Random(seed)
    low, high = gap_s
    order = list(kinds)
    rng.shuffle(order)
    planned: list[Planned] = []
    at = 0.0
    while True:
        at += rng.uniform(low, high)
        if len(planned) >= len(order) and at > duration_s:
            return planned
        kind = order[len(planned)] if len(planned) < len(order) else rng.choice(order)
        planned.append(Planned(round(at, 1), kind))
