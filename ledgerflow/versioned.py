"""What the versioned, admin-only aggregates share (training mode, the model registry): who may
change them, optimistic concurrency on their version, and replaying their events strictly.

Pure: every function takes what it decides on as arguments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from ledgerflow.contracts.events import Event, derived_event_id
from ledgerflow.errors import ValidationError

__all__ = [
    "ADMIN_ROLE",
    "MAX_STAMP_AHEAD_MICROS",
    "NOT_ADMIN",
    "VERSION_CONFLICT",
    "CommandSource",
    "VersionedCommand",
    "VersionedOutcome",
    "command_fields",
    "fold_strictly",
    "not_admin",
    "outcome_event_id",
    "stamp",
    "version_conflict",
]

ADMIN_ROLE = "admin"

# Machine-readable rejection codes both aggregates use.
NOT_ADMIN = "not_admin"
VERSION_CONFLICT = "version_conflict"

Refusal = tuple[str, str]  # (code, message)


MAX_STAMP_AHEAD_MICROS = 24 * 3600 * 1_000_000
"""How far a tenant's last outcome may be ahead of the wall clock and still be followed (``stamp``)."""


def stamp(now_micros: int, last_micros: int | None) -> int:
    """The time to decide a tenant's next command at: ``now``, or 1 µs after the tenant's last
    outcome when that is later. Outcomes are stamped by whichever worker owns the partition; after a
    rebalance the new owner's wall clock may be behind the old one's, and a disable stamped before
    the enable it ends is an illegal history (the audit's ``training.illegal``). So the stamps of
    one tenant never go back, whatever the clocks do — within ``MAX_STAMP_AHEAD_MICROS``: a last
    outcome further ahead than that is no clock skew but a record written from outside (up to the
    year 2200), and following it would put every later outcome there, a lock's deadline included;
    the clock is kept then (the audit names that record)."""
    if last_micros is None or now_micros > last_micros or last_micros - now_micros > MAX_STAMP_AHEAD_MICROS:
        return now_micros
    return last_micros + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionedCommand:
    """What every command to a versioned aggregate says: who asks, with which roles, for which
    tenant, expecting which version (None: whatever the current one is), issued when."""

    command_id: str
    tenant: str
    actor: str
    actor_roles: tuple[str, ...]
    expected_version: int | None = None
    issued_at: int


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionedOutcome:
    """What every answer to a command says: the version it leaves behind (for a refusal, the
    unchanged current one), the command and its actor, when."""

    tenant: str
    version: int
    command_id: str
    actor: str
    occurred_at: int


@dataclass(frozen=True, slots=True)
class CommandSource:
    """Where the command an outcome answers lies: its topic (full name), partition and offset."""

    topic: str
    partition: int
    offset: int


def outcome_event_id(kind: str, tenant: str, ident: str, source: CommandSource | None) -> str:
    """The deterministic ``event_id`` of an outcome of type ``kind``: derived from ``ident`` (the
    command id, or the expiry's), or, for a command without an id (written straight to Kafka: the
    edge always sets one), from the command's position ``source``.

    The position is what stays unique and stable: a crashed batch's transaction is aborted and
    the same command, at the same offset, is decided again (by this worker or the next owner),
    so the replay re-derives the same id, and no two records of a topic share a position. The
    command's own ``event_id`` is its producer's to choose, and a producer that leaves out the
    command id may as well repeat it; the agents decide such commands each time. The full topic
    name keeps a new generation of topics (``ledgerflow migrate``, another prefix) from deriving
    ids an older one holds. Ids of commands with an id are unchanged: (kind, tenant, id)."""
    if ident or source is None:
        return derived_event_id(kind, tenant, ident)
    return derived_event_id(kind, tenant, "", source.topic, str(source.partition), str(source.offset))


def command_fields(record: Event, admin: bool) -> dict[str, Any]:
    """The ``VersionedCommand`` fields of a command record (keyword arguments of its command).

    Only the edge writes the command topics, and only for admins, so a record stands for an
    admin's command (``admin=False`` models anything else)."""
    p = record.payload
    return {
        "command_id": getattr(p, "command_id"),  # noqa: B009 - every command payload has them
        "tenant": record.tenant,
        "actor": getattr(p, "actor"),  # noqa: B009
        "actor_roles": (ADMIN_ROLE,) if admin else (),
        "expected_version": getattr(p, "expected_version"),  # noqa: B009
        "issued_at": record.occurred_at,
    }


class _Tenanted(Protocol):
    @property
    def tenant(self) -> str: ...


State = TypeVar("State")
Change = TypeVar("Change", bound=_Tenanted)


def not_admin(actor_roles: tuple[str, ...]) -> Refusal | None:
    """Only an actor with the ``admin`` role may change an aggregate."""
    return None if ADMIN_ROLE in actor_roles else (NOT_ADMIN, "actor lacks the admin role")


def version_conflict(expected: int | None, current: int) -> Refusal | None:
    """Optimistic concurrency: a command that names a version must name the current one."""
    if expected is not None and expected != current:
        return VERSION_CONFLICT, f"expected version {expected}, current {current}"
    return None


def fold_strictly(
    events: Iterable[Change],
    initial: State | None,
    *,
    initial_of: Callable[[str], State],
    check: Callable[[State, Change], str | None],
    evolve: Callable[[State, Change], State],
    what: str,
    empty: str,
) -> State:
    """Replay ``events`` from ``initial`` (default: the first event's tenant at version 0);
    raises ``ValidationError`` naming ``what`` event and the index of the first illegal one,
    or ``empty`` when there is nothing to fold and no initial state."""
    state = initial
    for index, event in enumerate(events):
        if state is None:
            state = initial_of(event.tenant)
        problem = check(state, event)
        if problem is not None:
            raise ValidationError(f"{what} event #{index} ({type(event).__name__}): {problem}")
        state = evolve(state, event)
    if state is None:
        raise ValidationError(empty)
    return state
