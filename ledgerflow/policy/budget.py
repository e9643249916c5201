"""The per-turn evaluation budget: deterministic work units, not wall-clock time.

Decisions are re-derived by the audit from the log, so whether a turn ran out of
budget must be a pure function of (turn, pack, training): evaluation counts *work
units* instead of reading a clock. One unit is roughly one character passed through
a C-level scan (a regex search, ``str.find``, ``casefold``); handling one candidate
match in Python (checksums, slicing, span bookkeeping) costs ``CANDIDATE_UNITS``.

Every scan is charged *before* it runs and every candidate as it is handled, so a
turn that would exceed ``EVALUATION_BUDGET`` stops as soon as the meter passes it.
The limit, the charges and the reason string are part of the decision function:
changing them is a change of semantics, like changing a detector.
"""

from __future__ import annotations

from dataclasses import dataclass

EVALUATION_BUDGET = 6_000_000
"""Work units one turn may cost. Ordinary 64 KiB text under the shipped packs costs
well under a third of it; hostile turns reach it within a few milliseconds."""

CANDIDATE_UNITS = 400
"""Units charged for each candidate a detector or matcher handles in Python."""

BUDGET_REASON = "evaluation_budget"
"""The reason of a decision whose evaluation ran out of budget (not a valid rule id)."""


class BudgetExceeded(Exception):
    """Raised by :meth:`WorkMeter.charge` when the meter passes its limit."""


@dataclass(slots=True)
class WorkMeter:
    """Counts the work units of one evaluation; raises once ``limit`` is passed."""

    limit: int = EVALUATION_BUDGET
    used: int = 0

    def charge(self, units: int) -> None:
        """Add ``units``; raise BudgetExceeded when the total passes the limit."""
        self.used += units
        if self.used > self.limit:
            raise BudgetExceeded(f"evaluation used {self.used} work units, over the budget of {self.limit}")

    def candidates(self, count: int = 1) -> None:
        """Charge ``count`` candidates handled in Python."""
        self.charge(count * CANDIDATE_UNITS)


UNMETERED_LIMIT = 1 << 62
"""The limit of a meter that only counts (tests, benchmarks)."""


def unmetered() -> WorkMeter:
    """A meter that counts but never stops (for callers outside evaluation)."""
    return WorkMeter(limit=UNMETERED_LIMIT)
