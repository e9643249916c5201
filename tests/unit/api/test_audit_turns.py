"""Turns for the edge's audit slot: no tenant keeps the others at 429 by asking again and again."""

from __future__ import annotations

from ledgerflow.api.audit_turns import AuditTurns


def test_a_tenant_nobody_competes_with_audits_back_to_back() -> None:
    turns = AuditTurns()
    turns.started("acme", 0.0)
    assert not turns.yields("acme", 10.0)


def test_the_last_tenant_yields_while_a_refused_one_waits() -> None:
    turns = AuditTurns()
    turns.started("acme", 0.0)
    turns.refused("globex", 1.0)
    assert turns.yields("acme", 5.0)
    assert not turns.yields("globex", 5.0)


def test_with_two_tenants_asking_all_the_time_the_slot_alternates() -> None:
    turns, ran = AuditTurns(), []
    for step in range(6):
        now = float(step)
        # The slot is free: acme always asks first, then globex.
        runner = None
        for tenant in ("acme", "globex"):
            if not turns.yields(tenant, now):
                runner = tenant
                break
            turns.refused(tenant, now)
        assert runner is not None, f"nobody may audit at step {step}"
        turns.started(runner, now)
        ran.append(runner)
        # While it runs, the other one asks and is refused (the slot is busy).
        turns.refused("globex" if runner == "acme" else "acme", now + 0.5)
    assert ran == ["acme", "globex"] * 3


def test_a_waiting_tenant_that_never_comes_back_is_forgotten() -> None:
    turns = AuditTurns(waiting_for_s=30.0)
    turns.started("acme", 0.0)
    turns.refused("globex", 1.0)
    assert turns.yields("acme", 31.0)
    assert not turns.yields("acme", 31.5)
    turns.started("acme", 40.0)
    assert turns.refused_at == {}


def test_being_served_ends_the_wait() -> None:
    turns = AuditTurns()
    turns.started("acme", 0.0)
    turns.refused("globex", 1.0)
    turns.started("globex", 2.0)
    assert not turns.yields("acme", 3.0)
    assert turns.yields("globex", 3.0) is False
    turns.refused("acme", 3.0)
    assert turns.yields("globex", 4.0)


def test_a_tenant_that_asks_later_does_not_go_before_one_that_waits() -> None:
    """Only the tenant that ran last used to yield: a third tenant asking the moment the slot freed
    went before one that had been waiting for it."""
    turns = AuditTurns()
    turns.started("acme", 0.0)
    turns.refused("initech", 1.0)  # waiting first
    turns.refused("globex", 2.0)  # waiting after it
    assert turns.yields("globex", 3.0)
    assert turns.yields("umbrella", 3.0)  # never refused: not waiting at all
    assert not turns.yields("initech", 3.0)


def test_two_tenants_asking_all_the_time_cannot_keep_a_third_out() -> None:
    """acme and globex ask the moment the slot frees, initech once a round (it honours Retry-After).
    Before, acme and globex alternated for ever: each was not the last when the other had run."""
    turns, ran, running, now = AuditTurns(), [], "acme", 0.0
    turns.started(running, now)
    for _ in range(6):
        for tenant in ("acme", "globex", "initech"):  # while it runs, the others are refused
            if tenant != running:
                turns.refused(tenant, now + 0.5)
        now += 1.0
        runner = None
        for tenant in ("acme", "globex", "initech"):  # the slot is free: the eager ones ask first
            if not turns.yields(tenant, now):
                runner = tenant
                break
            turns.refused(tenant, now)
        assert runner is not None
        turns.started(runner, now)
        ran.append(running := runner)
    assert "initech" in ran[:3], ran
