"""The per-turn evaluation budget: deterministic work units, not wall-clock time.

Decisions are re-derived by the audit from the log, so whether a turn ran out of
budget must be a pure function of (turn, pack, training): evaluation counts *work
units* instead of reading a clock. One unit is roughly one character passed through
a C-level scan, about a nanosecond; a regex scan costs more per character, and
handling one candidate match in Python (checksums, slicing, span bookkeeping) costs
a fixed number of units per detector. The weights below are upper bounds measured
on hostile inputs, so the units of a turn bound its real cost.

Every scan is charged *before* it runs and every candidate as it is handled, so a
turn that would exceed ``EVALUATION_BUDGET`` stops as soon as the meter passes it.
The limit, the charges and the reason string are part of the decision function:
changing them is a change of semantics, like changing a detector.
"""

from __future__ import annotations

from dataclasses import dataclass

EVALUATION_BUDGET = 12_000_000
"""Work units one turn may cost (see the table in docs/policy.md, "Evaluation budget")."""

# What each piece of work costs, in units. One unit is about one nanosecond of CPU on
# the development machine (2 shared cores, loaded): each weight is the worst cost per
# character (or per candidate) measured over tests/unit/policy/adversarial.py, rounded
# up. Scans are charged before they run, candidates as they are handled.
FOLD_PER_CHAR = 4
FOLD_PER_EXPANSION = 1_300
KEYWORDS_PER_CHAR = 10
PATTERN_PER_CHAR = 5
RE2_MATCH = 4_500
"""A match found by RE2 for a ``redact`` rule (the Python wrapper's work per match)."""
RE2_SEARCH_PER_CHAR = 2
"""Each further RE2 search for a ``redact`` rule, per character it may read."""
PATTERN_PYTHON_PER_STEP = 9
"""A pattern only Python's backtracking engine can run (``bounded`` or ``unbounded``), per
step of its backtracking bound (``PatternMatcher.steps`` + ``steps_per_char`` × the characters
left, summed over the positions where a match can start; patterns.py ``backtracking``): a step
is one character read or one zero-width check. ``[a-z]{1,999}\\b`` (1,998 steps per position)
costs about 8.5 ns × 999 per position on 64 KiB of letters, 4.3 ns per step; repeated groups
with a lookaround (``(?:(?=\\w)\\w){1,500}\\b``) about 6.5 ns per step."""
MATCH = 1_000
"""A keyword or pattern match handled in Python."""
EMAIL_PER_CHAR = 5
EMAIL_PER_AT = 1_500
EMAIL_DOMAIN_PER_CHAR = 300
DIGIT_SCAN_PER_CHAR = 5
"""Each of the phone, card and IBAN scans, per character; they start only at digits
(and "("), which are charged again below."""
PHONE_PER_DIGIT = 50
PHONE_PER_PLUS = 20
PHONE_CANDIDATE = 1_500
CARD_PER_DIGIT = 20
CARD_CANDIDATE = 8_000
IBAN_PER_DIGIT = 20
IBAN_CANDIDATE = 6_000
SECRET_PER_CHAR = 8
SECRET_CANDIDATE = 2_500

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


UNMETERED_LIMIT = 1 << 62
"""The limit of a meter that only counts (tests, benchmarks)."""


def unmetered() -> WorkMeter:
    """A meter that counts but never stops (for callers outside evaluation)."""
    return WorkMeter(limit=UNMETERED_LIMIT)
