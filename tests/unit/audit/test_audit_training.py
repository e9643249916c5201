"""Folding training.audit: legal histories pass; each illegal transition is located."""

from __future__ import annotations

from ledgerflow.audit.training import TrainingCheck
from ledgerflow.projections.ops import Position
from ledgerflow.training import TrainingDisabled, TrainingEnabled, TrainingExpired, TrainingRejected
from ledgerflow.training.wire import record_of

S = 1_000_000
T0 = 1_700_000_000 * S


def enabled(version: int, at: int, ttl: int = 600, tenant: str = "acme") -> TrainingEnabled:
    return TrainingEnabled(
        tenant=tenant,
        version=version,
        command_id=f"e{version}",
        actor="ann",
        reason="label chats",
        ttl_seconds=ttl,
        occurred_at=at,
        expires_at=at + ttl * S,
        issued_at=at,
    )


def disabled(version: int, at: int, tenant: str = "acme") -> TrainingDisabled:
    return TrainingDisabled(
        tenant=tenant,
        version=version,
        command_id=f"d{version}",
        actor="ann",
        reason="done",
        occurred_at=at,
        issued_at=at,
    )


def feed(events: list) -> tuple[TrainingCheck, list]:
    check = TrainingCheck()
    found = [check.feed(Position("training.audit", 1, n), record_of(e)) for n, e in enumerate(events)]
    return check, [f for f in found if f is not None]


def test_a_legal_history_passes_and_yields_every_state() -> None:
    rejected = TrainingRejected(
        tenant="acme",
        version=1,
        command_id="x",
        command_type="EnableTraining",
        actor="bob",
        code="already_enabled",
        reason="already on",
        occurred_at=T0 + 2 * S,
        issued_at=T0,
    )
    expired = TrainingExpired(tenant="acme", version=4, expires_at=T0 + 700 * S, occurred_at=T0 + 701 * S)
    check, found = feed(
        [enabled(1, T0), rejected, disabled(2, T0 + 5 * S), enabled(3, T0 + 100 * S), expired]
    )
    assert found == []
    assert check.states == {("acme", 1): True, ("acme", 2): False, ("acme", 3): True, ("acme", 4): False}


def test_disabling_a_disabled_lock_is_illegal_at_its_offset() -> None:
    _, found = feed([enabled(1, T0), disabled(2, T0 + S), disabled(3, T0 + 2 * S)])
    assert [(f.kind, f.topic, f.partition, f.offset, f.key) for f in found] == [
        ("training.illegal", "training.audit", 1, 2, "acme")
    ]
    assert "not enabled" in found[0].detail


def test_a_skipped_version_is_illegal() -> None:
    _, found = feed([enabled(1, T0), disabled(3, T0 + S)])
    assert [f.offset for f in found] == [1]
    assert "next version is 2" in found[0].detail


def test_a_command_after_the_deadline_without_expiry_first_is_illegal() -> None:
    _, found = feed([enabled(1, T0, ttl=10), disabled(2, T0 + 11 * S)])
    assert [f.offset for f in found] == [1]
    assert "TrainingExpired must come first" in found[0].detail


def test_tenants_are_folded_independently() -> None:
    _, found = feed([enabled(1, T0, tenant="acme"), enabled(1, T0, tenant="globex")])
    assert found == []
