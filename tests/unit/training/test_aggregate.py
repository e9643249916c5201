from __future__ import annotations

import pytest

from ledgerflow.errors import ValidationError
from ledgerflow.training.aggregate import (
    DEFAULT_TTL_SECONDS,
    MAX_TTL_SECONDS,
    DisableTraining,
    EnableTraining,
    TrainingDisabled,
    TrainingEnabled,
    TrainingExpired,
    TrainingRejected,
    TrainingState,
    check_transition,
    decide,
    evolve,
    expire_due,
    fold,
    initial_state,
    is_active,
)

S = 1_000_000
T0 = 1_700_000_000 * S


def enable(**overrides: object) -> EnableTraining:
    fields: dict[str, object] = {
        "command_id": "cmd-enable",
        "tenant": "acme",
        "actor": "ann",
        "actor_roles": ("admin",),
        "reason": "collect labelled conversations",
        "ttl_seconds": 600,
        "expected_version": None,
        "issued_at": T0,
    }
    fields.update(overrides)
    return EnableTraining(**fields)  # type: ignore[arg-type]


def disable(**overrides: object) -> DisableTraining:
    fields: dict[str, object] = {
        "command_id": "cmd-disable",
        "tenant": "acme",
        "actor": "ann",
        "actor_roles": ("admin",),
        "reason": "done",
        "expected_version": None,
        "issued_at": T0,
    }
    fields.update(overrides)
    return DisableTraining(**fields)  # type: ignore[arg-type]


def apply_all(state: TrainingState, events: list) -> TrainingState:
    for event in events:
        assert check_transition(state, event) is None
        state = evolve(state, event)
    return state


def enabled_state(now: int = T0, ttl: int = 600) -> TrainingState:
    return apply_all(initial_state("acme"), decide(initial_state("acme"), enable(ttl_seconds=ttl), now))


def test_admin_enable_is_accepted_with_version_one_and_deadline_from_ttl() -> None:
    events = decide(initial_state("acme"), enable(), T0 + 5)
    assert events == [
        TrainingEnabled(
            tenant="acme",
            version=1,
            command_id="cmd-enable",
            actor="ann",
            reason="collect labelled conversations",
            ttl_seconds=600,
            occurred_at=T0 + 5,
            expires_at=T0 + 5 + 600 * S,
            issued_at=T0,
        )
    ]
    state = apply_all(initial_state("acme"), events)
    assert state == TrainingState(
        tenant="acme",
        enabled=True,
        version=1,
        owner="ann",
        reason="collect labelled conversations",
        enabled_at=T0 + 5,
        expires_at=T0 + 5 + 600 * S,
    )


def test_missing_ttl_defaults_to_one_hour() -> None:
    [event] = decide(initial_state("acme"), enable(ttl_seconds=None), T0)
    assert isinstance(event, TrainingEnabled)
    assert event.ttl_seconds == DEFAULT_TTL_SECONDS == 3600
    assert event.expires_at == T0 + 3600 * S


def test_non_admin_is_rejected_without_bumping_the_version() -> None:
    state = initial_state("acme")
    [event] = decide(state, enable(actor_roles=("producer", "auditor")), T0)
    assert isinstance(event, TrainingRejected)
    assert (event.code, event.reason, event.version) == ("not_admin", "actor lacks the admin role", 0)
    assert event.command_id == "cmd-enable" and event.command_type == "EnableTraining"
    assert evolve(state, event) == state


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_blank_or_overlong_reason_is_rejected(reason: str) -> None:
    [event] = decide(initial_state("acme"), enable(reason=reason), T0)
    assert isinstance(event, TrainingRejected) and event.code == "reason_required"


@pytest.mark.parametrize("ttl", [0, -5, MAX_TTL_SECONDS + 1])
def test_ttl_outside_bounds_is_rejected(ttl: int) -> None:
    [event] = decide(initial_state("acme"), enable(ttl_seconds=ttl), T0)
    assert isinstance(event, TrainingRejected) and event.code == "ttl_out_of_range"
    assert str(ttl) in event.reason


@pytest.mark.parametrize("ttl", [1, MAX_TTL_SECONDS])
def test_ttl_at_the_bounds_is_accepted(ttl: int) -> None:
    [event] = decide(initial_state("acme"), enable(ttl_seconds=ttl), T0)
    assert isinstance(event, TrainingEnabled) and event.expires_at == T0 + ttl * S


def test_expected_version_mismatch_names_both_versions() -> None:
    [event] = decide(enabled_state(), disable(expected_version=0), T0 + 1)
    assert isinstance(event, TrainingRejected)
    assert event.code == "version_conflict"
    assert event.reason == "expected version 0, current 1"


def test_two_concurrent_enables_with_the_same_expected_version_the_second_is_rejected() -> None:
    state = initial_state("acme")
    first = enable(command_id="a", actor="ann", expected_version=0)
    second = enable(command_id="b", actor="bob", expected_version=0)
    first_events = decide(state, first, T0)
    state = apply_all(state, first_events)
    second_events = decide(state, second, T0 + 1)
    assert [type(e) for e in first_events] == [TrainingEnabled]
    [rejected] = second_events
    assert isinstance(rejected, TrainingRejected)
    assert rejected.command_id == "b" and rejected.reason == "expected version 0, current 1"
    assert apply_all(state, second_events) == state
    assert state.owner == "ann" and state.version == 1


def test_enable_while_enabled_is_rejected_even_without_expected_version() -> None:
    [event] = decide(enabled_state(), enable(command_id="again"), T0 + 1)
    assert isinstance(event, TrainingRejected) and event.code == "already_enabled"


def test_disable_while_disabled_is_rejected() -> None:
    [event] = decide(initial_state("acme"), disable(), T0)
    assert isinstance(event, TrainingRejected) and event.code == "not_enabled"


def test_admin_disable_clears_the_lock_and_bumps_the_version() -> None:
    state = enabled_state()
    events = decide(state, disable(expected_version=1), T0 + 10)
    assert [type(e) for e in events] == [TrainingDisabled]
    state = apply_all(state, events)
    assert state == TrainingState(tenant="acme", enabled=False, version=2)


def test_authorisation_is_checked_before_the_version_so_non_admins_learn_nothing() -> None:
    [event] = decide(enabled_state(), disable(actor_roles=(), expected_version=7), T0 + 1)
    assert isinstance(event, TrainingRejected) and event.code == "not_admin"


def test_expire_due_only_at_or_after_the_deadline() -> None:
    state = enabled_state(ttl=60)
    deadline = T0 + 60 * S
    assert expire_due(state, deadline - 1) == []
    assert expire_due(initial_state("acme"), deadline) == []
    [event] = expire_due(state, deadline)
    assert event == TrainingExpired(tenant="acme", version=2, expires_at=deadline, occurred_at=deadline)
    assert apply_all(state, [event]) == TrainingState(tenant="acme", enabled=False, version=2)


def test_is_active_treats_an_overdue_lock_as_off() -> None:
    state = enabled_state(ttl=60)
    assert is_active(state, T0 + 60 * S - 1)
    assert not is_active(state, T0 + 60 * S)
    assert not is_active(initial_state("acme"), T0)


def test_command_after_the_deadline_records_the_expiry_first() -> None:
    state = enabled_state(ttl=60)
    later = T0 + 120 * S
    events = decide(state, enable(command_id="renew", expected_version=2), later)
    assert [type(e) for e in events] == [TrainingExpired, TrainingEnabled]
    assert [e.version for e in events] == [2, 3]
    final = apply_all(state, events)
    assert final.enabled and final.version == 3 and final.expires_at == later + 600 * S


def test_disable_after_the_deadline_is_rejected_because_the_lock_already_expired() -> None:
    state = enabled_state(ttl=60)
    events = decide(state, disable(), T0 + 61 * S)
    assert [type(e) for e in events] == [TrainingExpired, TrainingRejected]
    assert isinstance(events[1], TrainingRejected) and events[1].code == "not_enabled"


def test_command_for_another_tenant_is_a_wiring_error() -> None:
    with pytest.raises(ValidationError, match="tenant 'globex'"):
        decide(initial_state("acme"), enable(tenant="globex"), T0)


def test_fold_replays_an_audit_log() -> None:
    log: list = []
    state = initial_state("acme")
    for command, now in [
        (enable(actor_roles=("subscriber",)), T0),
        (enable(ttl_seconds=60), T0 + 1),
        (enable(command_id="dup"), T0 + 2),
        (disable(expected_version=1), T0 + 3),
        (enable(ttl_seconds=30), T0 + 4),
    ]:
        events = decide(state, command, now)
        log.extend(events)
        state = apply_all(state, events)
    log.extend(expire_due(state, T0 + 4 + 30 * S))
    final = fold(log)
    assert final == TrainingState(tenant="acme", enabled=False, version=4)
    assert fold([], initial_state("acme")) == initial_state("acme")


def test_fold_refuses_an_empty_log_without_a_tenant() -> None:
    with pytest.raises(ValidationError, match="empty"):
        fold([])


def test_fold_names_the_index_of_an_illegal_transition() -> None:
    [enabled] = decide(initial_state("acme"), enable(), T0)
    with pytest.raises(ValidationError, match=r"#1 \(TrainingEnabled\).*already enabled"):
        fold([enabled, enabled])


def _enabled_event(**overrides: object) -> TrainingEnabled:
    [event] = decide(initial_state("acme"), enable(), T0)
    assert isinstance(event, TrainingEnabled)
    fields = {name: getattr(event, name) for name in TrainingEnabled.__dataclass_fields__}
    fields.update(overrides)
    return TrainingEnabled(**fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (initial_state("acme"), _enabled_event(version=2), "carries version 2; the next version is 1"),
        (initial_state("globex"), _enabled_event(), "for tenant 'acme' applied to tenant 'globex'"),
        (initial_state("acme"), _enabled_event(expires_at=T0 + 1), "not ttl_seconds"),
        (
            initial_state("acme"),
            _enabled_event(ttl_seconds=MAX_TTL_SECONDS + 1, expires_at=T0 + (MAX_TTL_SECONDS + 1) * S),
            "outside",
        ),
        (
            initial_state("acme"),
            TrainingDisabled(
                tenant="acme", version=1, command_id="c", actor="a", reason="r", occurred_at=T0, issued_at=T0
            ),
            "TrainingDisabled while training mode is not enabled",
        ),
        (
            initial_state("acme"),
            TrainingExpired(tenant="acme", version=1, expires_at=T0, occurred_at=T0),
            "TrainingExpired while training mode is not enabled",
        ),
        (
            TrainingState("acme", True, 1, "ann", "r", T0, T0 + 60 * S),
            TrainingExpired(tenant="acme", version=2, expires_at=T0 + 60 * S, occurred_at=T0 + 59 * S),
            "before the deadline",
        ),
        (
            TrainingState("acme", True, 1, "ann", "r", T0, T0 + 60 * S),
            TrainingExpired(tenant="acme", version=2, expires_at=T0 + 61 * S, occurred_at=T0 + 61 * S),
            "names deadline",
        ),
        (
            TrainingState("acme", True, 1, "ann", "r", T0, T0 + 60 * S),
            TrainingDisabled(
                tenant="acme",
                version=2,
                command_id="c",
                actor="a",
                reason="r",
                occurred_at=T0 - 1,
                issued_at=T0,
            ),
            "precedes the enabling",
        ),
        (
            TrainingState("acme", True, 1, "ann", "r", T0, T0 + 60 * S),
            TrainingDisabled(
                tenant="acme",
                version=2,
                command_id="c",
                actor="a",
                reason="r",
                occurred_at=T0 + 60 * S,
                issued_at=T0,
            ),
            "a TrainingExpired must come first",
        ),
        (
            initial_state("acme"),
            TrainingRejected(
                tenant="acme",
                version=3,
                command_id="c",
                command_type="EnableTraining",
                actor="a",
                code="not_admin",
                reason="actor lacks the admin role",
                occurred_at=T0,
                issued_at=T0,
            ),
            "records version 3 but the state is at 0",
        ),
    ],
)
def test_check_transition_names_illegal_transitions(
    state: TrainingState, event: object, expected: str
) -> None:
    problem = check_transition(state, event)  # type: ignore[arg-type]
    assert problem is not None and expected in problem


def test_evolve_refuses_something_that_is_not_a_training_event() -> None:
    with pytest.raises(ValidationError, match="not a training event: str"):
        evolve(initial_state("acme"), "TrainingEnabled")  # type: ignore[arg-type]
