from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.training.aggregate import (
    DisableTraining,
    EnableTraining,
    TrainingRejected,
    check_transition,
    decide,
    evolve,
    expire_due,
    fold,
    initial_state,
)

S = 1_000_000

step = st.tuples(
    st.sampled_from(["enable", "disable", "tick"]),
    st.integers(min_value=0, max_value=120 * S),  # time advance before the step
    st.sampled_from([("admin",), ("producer",)]),
    st.sampled_from(["why", ""]),
    st.one_of(st.none(), st.integers(min_value=-1, max_value=200)),  # ttl seconds
    st.one_of(st.none(), st.integers(min_value=0, max_value=6)),  # expected version
)


@settings(max_examples=150, deadline=None)
@given(st.lists(step, max_size=25))
def test_every_decided_history_is_legal_and_versions_count_accepted_transitions(steps: list) -> None:
    state = initial_state("acme")
    now = 0
    log: list = []
    for index, (kind, gap, roles, reason, ttl, expected) in enumerate(steps):
        now += gap
        common = {
            "command_id": f"c{index}",
            "tenant": "acme",
            "actor": "ann",
            "actor_roles": roles,
            "reason": reason,
            "expected_version": expected,
            "issued_at": now,
        }
        if kind == "enable":
            events = decide(state, EnableTraining(ttl_seconds=ttl, **common), now)
        elif kind == "disable":
            events = decide(state, DisableTraining(**common), now)
        else:
            events = expire_due(state, now)
        for event in events:
            assert check_transition(state, event) is None, event
            state = evolve(state, event)
        log.extend(events)
    accepted = [e for e in log if not isinstance(e, TrainingRejected)]
    assert state.version == len(accepted)
    assert fold(log, initial_state("acme")) == state
