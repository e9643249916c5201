"""``verify.integrity_problem``: a decision must carry its chain fields and hash to its own hash."""

from __future__ import annotations

import dataclasses

from ledgerflow.projections.verify import integrity_problem, reason_of
from tests.unit.projections.test_conditions import decision, turn


def test_a_decision_as_the_policy_agent_writes_it_passes() -> None:
    assert integrity_problem(decision(1, None)) is None


def test_an_altered_decision_is_refused() -> None:
    genuine = decision(1, None)
    altered = dataclasses.replace(genuine, payload=dataclasses.replace(genuine.payload, outcome="deny"))
    problem = integrity_problem(altered)
    assert problem is not None and reason_of(problem) == "altered"


def test_a_decision_without_chain_fields_is_refused() -> None:
    bare = dataclasses.replace(decision(1, None), sequence=None, prev_hash=None, hash=None)
    problem = integrity_problem(bare)
    assert problem is not None and reason_of(problem) == "unchained"


def test_other_records_are_not_checked() -> None:
    assert integrity_problem(turn(1)) is None
