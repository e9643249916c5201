"""The models agent through in-memory ports: answers in order with one chain per tenant,
optimistic concurrency across a batch, redelivery and passed commands, duplicate command ids,
poison, a failed write, and a new owner recovering every registry from models.audit."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from pathlib import Path

from ledgerflow.agents.models import ModelsAgent
from ledgerflow.agents.output import Written
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import Event, derived_event_id, new_event
from ledgerflow.contracts.payloads import ModelRegistered, ModelRejected, RegisterModel, SetModelEnabled
from ledgerflow.policy.wire import head_after
from tests.unit.agents.memory import (
    T0,
    InputTopic,
    Letters,
    OutputTopic,
    chained,
    pinned,
    retry_after_failed_write,
)

SETTINGS = Settings(state_dir=Path("/nonexistent"))


def register(n: int, model: str = "slm-1", tenant: str = "acme", expected: int | None = None) -> Event:
    payload = RegisterModel(f"reg-{tenant}-{n}", "admin-1", model, "local", 8192, 0.5, 1.5, True, expected)
    return new_event(
        "RegisterModel",
        tenant=tenant,
        subject=tenant,
        payload=payload,
        producer="edge:a",
        occurred_at_micros=T0 + n,
    )


def switch(n: int, enabled: bool, model: str = "slm-1", tenant: str = "acme", command_id: str = "") -> Event:
    payload = SetModelEnabled(command_id or f"set-{tenant}-{n}", "admin-1", model, enabled, None)
    return new_event(
        "SetModelEnabled",
        tenant=tenant,
        subject=tenant,
        payload=payload,
        producer="edge:a",
        occurred_at_micros=T0 + n,
    )


class Registry:
    """models.commands → the agent → models.audit, all in memory; ``restart`` is a new owner."""

    def __init__(self) -> None:
        self.commands, self.audit, self.letters = InputTopic("models.commands"), OutputTopic(), Letters()
        self.restart()

    def restart(self) -> None:
        self.agent = ModelsAgent(SETTINGS, self.audit, self.commands, self.letters, clock=lambda: T0 + 99)

    def feed(self, *events: Event, partition: int = 0, deliver: bool = True) -> list:
        records = [self.commands.add(partition, e) for e in events]
        if deliver:
            asyncio.run(self.agent.handle(records))
        return records

    def log(self, partition: int = 0) -> list[Event]:
        return self.audit.decisions(partition)


def test_commands_are_answered_in_order_and_chained_per_tenant() -> None:
    world = Registry()
    world.feed(register(1), register(2, tenant="globex"), switch(3, False), switch(4, False))
    kinds = [(r.type, r.tenant, getattr(r.payload, "version", None)) for r in world.log()]
    assert kinds == [
        ("ModelRegistered", "acme", 1),
        ("ModelRegistered", "globex", 1),
        ("ModelDisabled", "acme", 2),
        ("ModelRejected", "acme", 2),  # already disabled: no_change
    ]
    assert [w.input_offset for w in world.audit.partitions[0]] == [0, 1, 2, 3]
    assert chained(world.log())


def test_a_stale_expected_version_in_the_same_batch_is_refused() -> None:
    world = Registry()
    world.feed(register(1, expected=0), register(2, "big", expected=0))
    outcomes = [r.payload for r in world.log()]
    assert isinstance(outcomes[0], ModelRegistered)
    assert isinstance(outcomes[1], ModelRejected) and outcomes[1].rejected_reason.startswith(
        "version_conflict"
    )


def test_redelivery_passed_commands_and_duplicate_ids_are_answered_once_also_by_a_new_owner() -> None:
    world = Registry()
    world.feed(register(1), deliver=False)  # the group committed past it, unanswered
    batch = world.feed(switch(2, False, command_id="dup"))
    assert world.commands.reads == [(0, 0, 1)]
    world.feed(switch(3, False, command_id="dup"))  # the same command id again at another offset
    asyncio.run(world.agent.handle(batch))  # and the batch redelivered
    world.restart()  # a new owner learns registries, heads and answered ids from models.audit
    world.feed(switch(4, False, command_id="dup"), switch(5, True))
    assert [r.type for r in world.log()] == ["ModelRegistered", "ModelDisabled", "ModelEnabled"]
    assert [r.payload.version for r in world.log()] == [1, 2, 3]  # type: ignore[union-attr]
    assert chained(world.log())


def test_poison_is_dead_lettered_and_a_failed_write_is_retried_once() -> None:
    world = Registry()
    garbage = world.commands.append(0, b"\xc3\x01garbage", b"acme")
    wrong_key = world.commands.append(0, codec.encode(register(1)), b"globex")
    asyncio.run(world.agent.handle([garbage, wrong_key]))
    assert [d.reason_code for d in world.letters.sent] == ["truncated", "invalid-envelope"]
    batch = world.feed(register(2), switch(3, False), deliver=False)
    retry_after_failed_write(
        world.audit, lambda b: asyncio.run(world.agent.handle(b)), world.agent.revoke, batch
    )
    assert [r.type for r in world.log()] == ["ModelRegistered", "ModelDisabled"]
    assert chained(world.log())


def test_commands_without_an_id_are_each_decided_also_after_a_new_owner_recovers() -> None:
    world = Registry()
    anonymous = [register(n, f"anon-{n}") for n in (1, 2)]
    world.feed(*[_without_id(e) for e in anonymous])
    world.restart()  # what a new owner learns from models.audit must not hold "" as answered either
    world.feed(_without_id(register(3, "anon-3")))
    assert [(r.type, r.payload.model) for r in world.log()] == [  # type: ignore[union-attr]
        ("ModelRegistered", "anon-1"),
        ("ModelRegistered", "anon-2"),
        ("ModelRegistered", "anon-3"),
    ]
    assert not world.letters.sent and chained(world.log())


def _without_id(event: Event) -> Event:
    return replace(event, payload=replace(event.payload, command_id=""))  # type: ignore[type-var]


def test_a_record_that_is_no_transition_does_not_stop_the_recovery() -> None:
    """models.audit holding ModelEnabled for a model never registered (written from outside, as
    the next link of the tenant's chain: what the trust rule cannot tell): the new owner's
    recovery skips it (the audit reports it) instead of failing at every retry."""
    from ledgerflow.contracts.payloads import ModelEnabled

    w = Registry()
    w.feed(register(1))
    ghost = new_event(
        "ModelEnabled",
        tenant="acme",
        subject="acme",
        payload=ModelEnabled("x", 2, "a", "ghost"),
        producer="ledgerflow-models",
        occurred_at_micros=T0 + 5,
    )
    ghost = link_event(ghost, head_after(w.log()[-1]))  # the next link of acme's chain: trusted
    w.audit.partitions[0].append(Written(1, codec.encode(ghost), None))
    w.restart()
    w.feed(register(2, model="slm-2"))
    assert [r.type for r in w.log()][-1] == "ModelRegistered"


def test_a_poison_command_is_dead_lettered_once_by_a_new_owner_that_reads_it_back() -> None:
    world = Registry()
    world.feed(register(1))
    asyncio.run(world.agent.handle([world.commands.append(0, b"\xc3\x01garbage", b"acme")]))
    world.restart()
    world.feed(switch(3, False))  # the group committed past the poison: Step 2 reads it back
    assert [(d.source_topic, d.offset) for d in world.letters.sent] == [("models.commands", 1)]
    assert [r.type for r in world.log()] == ["ModelRegistered", "ModelDisabled"]


def test_a_forged_outcome_claiming_a_far_input_does_not_swallow_the_next_command() -> None:
    """models.audit written from outside: the next link of acme's chain (a refusal, which applies
    to any registry) and a replayed copy of it, both with ``lf-input: 10**15``. Followed, every
    later command of the partition was skipped as already answered."""
    world = Registry()
    world.feed(register(1), switch(2, True))  # already enabled: a refusal
    refusal = world.log()[-1]
    assert refusal.type == "ModelRejected"
    forged = link_event(replace(refusal, event_id=str(uuid.uuid4())), head_after(refusal))
    log = world.audit.partitions[0]
    log.append(Written(len(log), codec.encode(forged), 10**15))
    log.append(Written(len(log), codec.encode(refusal), 10**15))
    world.restart()
    world.feed(switch(3, False))
    assert [r.type for r in world.log()] == [
        "ModelRegistered",
        "ModelRejected",
        "ModelRejected",  # forged
        "ModelRejected",  # forged
        "ModelDisabled",
    ], "the command after the forged records must be decided"
    assert (log[-1].input_offset, world.log()[-1].sequence, world.log()[-1].prev_hash) == (
        2,
        3,
        refusal.hash,
    ), "answered, linked to the real head"


def test_a_linked_outcome_of_a_tenant_whose_home_is_another_partition_steers_nothing() -> None:
    """A copy of globex's registration (globex's home is partition 1 of the 3 pinned) written
    straight to partition 0 as the start of a globex chain there, hashed right, carrying the id of
    acme's next command and an input partition 0 holds. Recovery folded it: the new owner held a
    registry for globex in partition 0, and acme's next command was skipped as a duplicate."""
    world = Registry()
    world.agent.guard = pinned(3)
    world.feed(register(1))  # acme, at home in partition 0
    world.feed(register(2, tenant="globex"), partition=1)  # globex, at home in 1
    [genuine] = world.log(1)
    assert isinstance(genuine.payload, ModelRegistered)
    payload = replace(genuine.payload, command_id="reg-acme-3")
    copy = link_event(replace(genuine, event_id=str(uuid.uuid4()), payload=payload), None)
    log = world.audit.partitions[0]
    log.append(Written(len(log), codec.encode(copy), 0))
    world.restart()
    world.agent.guard = pinned(3)
    world.feed(register(3, model="slm-2"))  # reg-acme-3
    assert [(r.type, r.tenant) for r in world.log()] == [
        ("ModelRegistered", "acme"),
        ("ModelRegistered", "globex"),  # the forged one
        ("ModelRegistered", "acme"),
    ], "acme's next command must be decided"
    assert set(world.agent._partitions[0].tenants) == {"acme"}
    assert chained([r for i, r in enumerate(world.log()) if i != 1])


def test_outcomes_of_commands_without_an_id_have_their_own_event_ids_stable_on_replay() -> None:
    """Commands written straight to models.commands may carry no command id. Their outcomes'
    ids were derived from (type, tenant, "") alone: two different registrations, or two different
    refusals, of one tenant shared one ``event_id`` — the envelope's unique id (docs/contracts.md),
    so a reader keyed by it kept one of two facts. An anonymous command's outcome id now names the
    command's position (topic, partition, offset): distinct, and the same when re-decided after an
    aborted write (a new owner, nothing of the first attempt in the log)."""
    world = Registry()
    anonymous = [
        _without_id(register(1, "anon-1")),
        _without_id(register(2, "anon-2")),
        _without_id(switch(3, True, "anon-1")),  # already enabled: refused
        _without_id(switch(4, True, "anon-2")),  # already enabled: refused
        register(5, "named"),
    ]
    world.feed(*anonymous)
    log = world.log()
    assert [r.type for r in log] == [
        "ModelRegistered",
        "ModelRegistered",
        "ModelRejected",
        "ModelRejected",
        "ModelRegistered",
    ]
    by_id = {r.event_id: r for r in log}
    assert len(by_id) == len(log), "an event_id-keyed reader lost an outcome to a shared id"
    assert log[-1].event_id == derived_event_id("ModelRegistered", "acme", "reg-acme-5"), (
        "the id of a command with an id is unchanged"
    )
    replay = Registry()  # the first write aborted: the same commands decided again from the start
    replay.commands = world.commands
    replay.restart()
    asyncio.run(replay.agent.handle([r for p in world.commands.partitions.values() for r in p]))
    assert [r.event_id for r in replay.log()] == [r.event_id for r in log]
