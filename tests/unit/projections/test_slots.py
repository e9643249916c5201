"""Every fenced Lua call of a projection touches one Redis Cluster slot (pure: no Redis).

A group (``FencedOps``) becomes one Lua call: its fence, its ops' keys, its ``Once`` key and its
chain condition's keys must hash to one slot, or a Redis Cluster refuses the call (CROSSSLOT).
Checked over the same generated logs as the fold (turns, decisions chained and forged, repeats,
starts and closes, two tenants), with ids that need escaping.
"""

from __future__ import annotations

from hypothesis import given, settings

from ledgerflow.contracts.events import Event
from ledgerflow.projections.conversations import project
from ledgerflow.projections.guards import copy_in_slot, guard_for, slot_of
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.ops import FencedOps, Position
from ledgerflow.projections.verify import MISMATCHED, integrity_problem, reason_of
from tests.unit.projections.test_fold import _log

KEYS = Keys.for_prefix("t1.", "g1")


def _keys_of(group: FencedOps) -> set[str]:
    keys = {group.fence_key, *(op.key for op in group.ops)}
    if group.once is not None:
        keys.add(group.once.key)
    if group.link is not None:
        head = group.link.head_key
        keys |= {head, head + ":applied", group.link.quarantine_key}
    return keys


@settings(max_examples=60, deadline=None)
@given(log=_log())
def test_every_group_of_every_record_is_in_one_slot(log: list[tuple[Event, Position]]) -> None:
    for event, at in log:
        if getattr(event.payload, "conversation_id", event.subject) != event.subject:
            # Chained under one conversation, projected into another: its keys would span two slots.
            # Such a decision is refused before it reaches Redis (dead-lettered, never projected).
            problem = integrity_problem(event)
            assert problem is not None and reason_of(problem) == MISMATCHED, problem
            continue
        for group in project(event, at, KEYS):
            slots = {slot_of(k) for k in _keys_of(group)}
            assert len(slots) == 1, (event.type, sorted(_keys_of(group)))


def test_a_guard_copy_lives_in_the_slot_of_the_key_it_guards() -> None:
    sentinel = KEYS.sentinel()
    for key in (
        KEYS.conversation("acme", "c/1{x}"),
        KEYS.tenant_fence("acme"),
        KEYS.checkpoint("read-models"),
    ):
        copy = guard_for(sentinel, key, cluster=True)
        assert slot_of(copy) == slot_of(key) and copy.startswith(sentinel + ":{")
        assert guard_for(sentinel, key, cluster=False) == sentinel  # one Redis: the guard itself


def test_each_slot_has_its_own_copy() -> None:
    copies = {copy_in_slot("g", s) for s in range(16384)}
    assert len(copies) == 16384
    assert all(slot_of(copy_in_slot("g", s)) == s for s in (0, 1, 5460, 5461, 10922, 16383))


def test_the_tenant_copy_of_a_chain_is_one_key_per_conversation_in_the_tenant_s_slot() -> None:
    # One key per chain: a parallel rebuild gives each partition's conversations to one worker,
    # so no key of the tenant group's chain copy is written by two workers.
    first, second = KEYS.tenant_chain("acme", "c1"), KEYS.tenant_chain("acme", "c/2{x}")
    assert first != second
    assert {slot_of(first), slot_of(second), slot_of(KEYS.tenant_fence("acme"))} == {slot_of(first)}
