"""Training mode as an event-sourced aggregate: pure decide / evolve / fold.

In the style of pyeventsourcing's ``examples/aggregate7``: frozen events, a command
function that *returns* events, a ``singledispatch`` ``evolve(state, event)`` and a
``fold`` that projects a list of events. No clock, no I/O, no randomness: every time
is passed in as microseconds since the Unix epoch (UTC).

Semantics (see docs/training.md):

- Only an actor with the ``admin`` role may switch; a reason is required.
- ``EnableTraining`` while enabled is rejected (no re-enable, no silent extension: to
  extend, disable and enable again, which leaves two audit records).
- ``DisableTraining`` while disabled is rejected.
- A TTL is required to lie within ``MIN_TTL_SECONDS … MAX_TTL_SECONDS``; absent, it is
  ``DEFAULT_TTL_SECONDS``.
- ``expected_version`` (optimistic concurrency) must equal the current version.
- An enabled lock whose deadline has passed expires: ``expire_due`` emits
  ``TrainingExpired``, and ``decide`` emits it first when a command arrives after the
  deadline (the command is then decided against the expired state).
- Accepted transitions (enabled, disabled, expired) bump ``version`` by one; a
  rejection records the current version and changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from functools import singledispatch

from ledgerflow import versioned
from ledgerflow.errors import ValidationError
from ledgerflow.training.records import (
    DisableTraining,
    EnableTraining,
    TrainingCommand,
    TrainingDisabled,
    TrainingEnabled,
    TrainingEvent,
    TrainingExpired,
    TrainingRejected,
    TrainingState,
)
from ledgerflow.versioned import ADMIN_ROLE, NOT_ADMIN, VERSION_CONFLICT

__all__ = [
    "ADMIN_ROLE",
    "ALREADY_ENABLED",
    "DEFAULT_TTL_SECONDS",
    "MAX_REASON_LENGTH",
    "MAX_TTL_SECONDS",
    "MIN_TTL_SECONDS",
    "NOT_ADMIN",
    "NOT_ENABLED",
    "REASON_REQUIRED",
    "TTL_OUT_OF_RANGE",
    "VERSION_CONFLICT",
    "check_transition",
    "decide",
    "evolve",
    "expire_due",
    "fold",
    "initial_state",
    "is_active",
]

MICROS_PER_SECOND = 1_000_000
MIN_TTL_SECONDS = 1
MAX_TTL_SECONDS = 7 * 24 * 3600
DEFAULT_TTL_SECONDS = 3600
MAX_REASON_LENGTH = 500

# Machine-readable rejection codes (TrainingRejected.code; also ledgerflow.versioned's two).
REASON_REQUIRED = "reason_required"
TTL_OUT_OF_RANGE = "ttl_out_of_range"
ALREADY_ENABLED = "already_enabled"
NOT_ENABLED = "not_enabled"


def initial_state(tenant: str) -> TrainingState:
    """The state of a tenant that has never switched training mode (version 0)."""
    return TrainingState(tenant=tenant)


# --- decide ---------------------------------------------------------------------------


def is_active(state: TrainingState, now_micros: int) -> bool:
    """True when the lock is on at ``now_micros`` (an overdue lock counts as off)."""
    return state.enabled and state.expires_at is not None and now_micros < state.expires_at


def expire_due(state: TrainingState, now_micros: int) -> list[TrainingEvent]:
    """``[TrainingExpired]`` when the lock is enabled and ``now >= expires_at``, else ``[]``."""
    if state.enabled and state.expires_at is not None and now_micros >= state.expires_at:
        return [
            TrainingExpired(
                tenant=state.tenant,
                version=state.version + 1,
                expires_at=state.expires_at,
                occurred_at=now_micros,
            )
        ]
    return []


def decide(state: TrainingState, command: TrainingCommand, now_micros: int) -> list[TrainingEvent]:
    """Decide a command against ``state`` at ``now_micros``; return the events to append.

    1. Emit ``TrainingExpired`` first if the lock is overdue, and continue from there.
    2. Refuse a non-admin actor.
    3. Refuse a blank or over-long reason; refuse an out-of-range TTL (enable only).
    4. Refuse an ``expected_version`` that differs from the current version.
    5. Refuse enabling an enabled lock, or disabling a disabled one.
    6. Otherwise accept: ``TrainingEnabled`` / ``TrainingDisabled`` at version + 1.

    Raises ``ValidationError`` if the command is for another tenant than ``state``:
    that is a wiring bug in the caller, not a refusal to record.
    """
    if command.tenant != state.tenant:
        raise ValidationError(
            f"command {command.command_id!r} is for tenant {command.tenant!r} but was decided "
            f"against the state of tenant {state.tenant!r}; load the state by the command's tenant"
        )
    # Step 1.
    events = expire_due(state, now_micros)
    for event in events:
        state = evolve(state, event)
    refusal = _refusal(state, command)
    if refusal is not None:
        code, message = refusal
        events.append(_rejected(state, command, code, message, now_micros))
        return events
    # Step 6.
    if isinstance(command, EnableTraining):
        ttl = _ttl_of(command)
        events.append(
            TrainingEnabled(
                tenant=state.tenant,
                version=state.version + 1,
                command_id=command.command_id,
                actor=command.actor,
                reason=command.reason.strip(),
                ttl_seconds=ttl,
                occurred_at=now_micros,
                expires_at=now_micros + ttl * MICROS_PER_SECOND,
                issued_at=command.issued_at,
            )
        )
    else:
        events.append(
            TrainingDisabled(
                tenant=state.tenant,
                version=state.version + 1,
                command_id=command.command_id,
                actor=command.actor,
                reason=command.reason.strip(),
                occurred_at=now_micros,
                issued_at=command.issued_at,
            )
        )
    return events


def _ttl_of(command: EnableTraining) -> int:
    return DEFAULT_TTL_SECONDS if command.ttl_seconds is None else command.ttl_seconds


def _refusal(state: TrainingState, command: TrainingCommand) -> tuple[str, str] | None:
    # Step 2.
    refused = versioned.not_admin(command.actor_roles)
    if refused is not None:
        return refused
    # Step 3.
    reason = command.reason.strip()
    if not reason:
        return REASON_REQUIRED, "a reason is required to switch training mode"
    if len(reason) > MAX_REASON_LENGTH:
        return REASON_REQUIRED, f"the reason is {len(reason)} characters long; at most {MAX_REASON_LENGTH}"
    if isinstance(command, EnableTraining):
        ttl = _ttl_of(command)
        if not MIN_TTL_SECONDS <= ttl <= MAX_TTL_SECONDS:
            return (
                TTL_OUT_OF_RANGE,
                f"ttl_seconds {ttl} is out of range; choose {MIN_TTL_SECONDS} to {MAX_TTL_SECONDS}",
            )
    # Step 4.
    refused = versioned.version_conflict(command.expected_version, state.version)
    if refused is not None:
        return refused
    # Step 5.
    if isinstance(command, EnableTraining) and state.enabled:
        return (
            ALREADY_ENABLED,
            f"training mode is already enabled (version {state.version}, by {state.owner}); "
            "disable it first to change the reason or TTL",
        )
    if isinstance(command, DisableTraining) and not state.enabled:
        return NOT_ENABLED, f"training mode is not enabled (version {state.version})"
    return None


def _rejected(
    state: TrainingState, command: TrainingCommand, code: str, message: str, now_micros: int
) -> TrainingRejected:
    return TrainingRejected(
        tenant=state.tenant,
        version=state.version,
        command_id=command.command_id,
        command_type=type(command).__name__,
        actor=command.actor,
        code=code,
        reason=message,
        occurred_at=now_micros,
        issued_at=command.issued_at,
    )


# --- evolve / fold ----------------------------------------------------------------------


def evolve(state: TrainingState, event: TrainingEvent) -> TrainingState:
    """Apply one event. Mechanical: legality is ``check_transition``'s job."""
    return _apply(event, state)


@singledispatch
def _apply(event: object, state: TrainingState) -> TrainingState:
    raise ValidationError(
        f"not a training event: {type(event).__name__}; "
        "expected TrainingEnabled, TrainingDisabled, TrainingExpired or TrainingRejected"
    )


@_apply.register
def _(event: TrainingEnabled, state: TrainingState) -> TrainingState:
    return replace(
        state,
        enabled=True,
        version=event.version,
        owner=event.actor,
        reason=event.reason,
        enabled_at=event.occurred_at,
        expires_at=event.expires_at,
    )


@_apply.register
def _(event: TrainingDisabled, state: TrainingState) -> TrainingState:
    return TrainingState(tenant=state.tenant, enabled=False, version=event.version)


@_apply.register
def _(event: TrainingExpired, state: TrainingState) -> TrainingState:
    return TrainingState(tenant=state.tenant, enabled=False, version=event.version)


@_apply.register
def _(event: TrainingRejected, state: TrainingState) -> TrainingState:
    return state


def fold(events: Iterable[TrainingEvent], initial: TrainingState | None = None) -> TrainingState:
    """Replay events from ``initial`` (default: the first event's tenant at version 0).

    Strict: raises ``ValidationError`` naming the index of the first illegal transition.
    """
    return versioned.fold_strictly(
        events,
        initial,
        initial_of=initial_state,
        check=check_transition,
        evolve=evolve,
        what="training",
        empty="cannot fold an empty event list without an initial state (pass the tenant's)",
    )


# --- legality (for the auditor) -----------------------------------------------------------


def check_transition(state: TrainingState, event: TrainingEvent) -> str | None:
    """Name what is illegal about applying ``event`` to ``state``, or ``None`` if it is legal."""
    name = type(event).__name__
    if event.tenant != state.tenant:
        return f"{name} for tenant {event.tenant!r} applied to tenant {state.tenant!r}"
    overdue = state.enabled and state.expires_at is not None and event.occurred_at >= state.expires_at
    if overdue and not isinstance(event, TrainingExpired):
        return (
            f"{name} at {event.occurred_at} while the lock was overdue (deadline {state.expires_at}); "
            "a TrainingExpired must come first"
        )
    if isinstance(event, TrainingRejected):
        if event.version != state.version:
            return f"TrainingRejected records version {event.version} but the state is at {state.version}"
        return None
    if isinstance(event, TrainingEnabled) and state.enabled:
        return f"TrainingEnabled while already enabled (since version {state.version})"
    if not isinstance(event, TrainingEnabled) and not state.enabled:
        return f"{name} while training mode is not enabled"
    if event.version != state.version + 1:
        return f"{name} carries version {event.version}; the next version is {state.version + 1}"
    if isinstance(event, TrainingEnabled):
        ttl_micros = event.expires_at - event.occurred_at
        if ttl_micros != event.ttl_seconds * MICROS_PER_SECOND:
            return (
                f"TrainingEnabled expires_at - occurred_at = {ttl_micros} µs, "
                f"not ttl_seconds {event.ttl_seconds}"
            )
        if not MIN_TTL_SECONDS <= event.ttl_seconds <= MAX_TTL_SECONDS:
            return (
                f"TrainingEnabled ttl_seconds {event.ttl_seconds} "
                f"is outside {MIN_TTL_SECONDS}..{MAX_TTL_SECONDS}"
            )
        return None
    if state.enabled_at is not None and event.occurred_at < state.enabled_at:
        return f"{name} at {event.occurred_at} precedes the enabling at {state.enabled_at}"
    if isinstance(event, TrainingExpired):
        if event.expires_at != state.expires_at:
            return f"TrainingExpired names deadline {event.expires_at}, the state's is {state.expires_at}"
        if state.expires_at is None or event.occurred_at < state.expires_at:
            return f"TrainingExpired at {event.occurred_at} before the deadline {state.expires_at}"
    return None
