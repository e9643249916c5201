"""Training outcomes reach the tenant's training status only if they link to the tenant's chain (pure).

``training.audit`` records are chained per tenant (their subject). Anyone who can write to Kafka
can append one: an unchained or unlinked ``TrainingDisabled`` used to be projected as it came, so
``GET /v1/training/status`` showed the forger's state while the agents kept the genuine one. Now
such a record is refused before projection (``integrity_problem``: no chain fields, wrong hash,
subject not its tenant) or by its chain condition (``ChainLink`` on the tenant's training chain
head), by the live writer's semantics (``MemorySpace``) and by the rebuild's fold alike. One that
links and hashes right but was read from another partition of ``training.audit`` than its
tenant's (where the training agent writes none) is refused before projection too
(``placement_problem``), by the live projector and the rebuild's ``projectable`` alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import TrainingDisabled, TrainingEnabled, TrainingExpired, TrainingRejected
from ledgerflow.kafka.placement import Placements, placement
from ledgerflow.policy.wire import head_after
from ledgerflow.projections.conversations import project
from ledgerflow.projections.fold import Fold, FoldStats, apply_writes
from ledgerflow.projections.guards import slot_of
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.model import MemorySpace
from ledgerflow.projections.ops import Position
from ledgerflow.projections.rebuild import ReplayStats, projectable
from ledgerflow.projections.verify import (
    ALTERED,
    MISMATCHED,
    MISPLACED,
    UNCHAINED,
    integrity_problem,
    placement_problem,
    reason_of,
)
from ledgerflow.projections.writer import Refusal
from ledgerflow.topics import CONVERSATION_EVENTS
from tests.unit.projections.test_conditions import decision

KEYS = Keys("lf:unit:")
T0 = 1_700_000_000_000_000
TOPIC = "training.audit"
TENANT = "acme"


def outcome(payload: object, i: int, head: ChainHead | None, *, tenant: str = TENANT) -> Event:
    """A ``training.audit`` record linked after ``head`` (None: the chain's first)."""
    unchained = new_event(
        type(payload).__name__,
        tenant=tenant,
        subject=tenant,
        payload=payload,  # type: ignore[arg-type]
        producer="ledgerflow-training",
        occurred_at_micros=T0 + i,
    )
    return link_event(unchained, head)


def enable(i: int, version: int, head: ChainHead | None) -> Event:
    return outcome(TrainingEnabled(f"k{i}", version, "admin-1", "pilot", T0 + 10**9, None), i, head)


def disable(i: int, version: int, head: ChainHead | None, actor: str = "admin-1") -> Event:
    reason = "done" if actor == "admin-1" else "forged"
    return outcome(TrainingDisabled(f"k{i}", version, actor, reason), i, head)


def at(offset: int) -> Position:
    return Position(TOPIC, 0, offset)


def status(data: dict[str, Any]) -> dict[str, str]:
    return data.get(KEYS.training(TENANT), {})  # type: ignore[no-any-return]


def _forged_log() -> list[tuple[Event, Position]]:
    """Enable v1, a copy of it, a forged disable linked to a made-up head (hash right), a
    forged disable linked to the real head at the wrong sequence, then the genuine disable v2."""
    first = enable(1, 1, None)
    fake_head = ChainHead(TENANT, 7, "cd" * 32)
    off_chain = disable(2, 2, fake_head, actor="intruder")
    skipping = dataclasses.replace(disable(3, 2, head_after(first), actor="intruder"), sequence=3)
    genuine = disable(4, 2, head_after(first))
    records = [first, dataclasses.replace(first), off_chain, skipping, genuine]
    return [(record, at(offset)) for offset, record in enumerate(records)]


def test_a_chained_training_outcome_carries_the_tenant_s_training_chain_condition() -> None:
    first = enable(1, 1, None)
    (group,) = project(first, at(0), KEYS)
    assert group.fence_key == KEYS.tenant_fence(TENANT)
    link = group.link
    assert link is not None
    assert (link.head_key, link.copy, link.quarantine_key) == (
        KEYS.training_chain(TENANT),
        "tenant",
        KEYS.training_quarantine(TENANT),
    )
    assert (link.sequence, link.prev_hash, link.hash) == (first.sequence, first.prev_hash, first.hash)
    # one Lua call on a Redis Cluster: the condition's keys are in the tenant group's slot
    keys = {group.fence_key, link.head_key, link.head_key + ":applied", link.quarantine_key}
    keys |= {op.key for op in group.ops}
    assert {slot_of(k) for k in keys} == {slot_of(KEYS.tenant(TENANT))}


def test_every_kind_of_training_outcome_is_chained() -> None:
    payloads = [
        TrainingEnabled("k1", 1, "a", "r", T0 + 5, None),
        TrainingDisabled("k2", 2, "a", "r"),
        TrainingExpired(None, 3, "ledgerflow-training", "the TTL elapsed"),
        TrainingRejected("k4", 3, "bob", "try", None, "forbidden: not an admin"),
    ]
    head = None
    for i, payload in enumerate(payloads):
        record = outcome(payload, i, head)
        assert integrity_problem(record) is None
        (group,) = project(record, at(i), KEYS)
        assert group.link is not None and group.link.head_key == KEYS.training_chain(TENANT)
        head = head_after(record)


def test_training_chains_are_per_tenant() -> None:
    assert KEYS.training_chain("acme") != KEYS.training_chain("globex")
    assert slot_of(KEYS.training_chain("a{b}/c")) == slot_of(KEYS.tenant_fence("a{b}/c"))


def test_an_unchained_training_outcome_is_refused_before_projection() -> None:
    linked = disable(1, 2, None, actor="intruder")
    forged = dataclasses.replace(linked, sequence=None, prev_hash=None, hash=None)
    problem = integrity_problem(forged)
    assert problem is not None and reason_of(problem) == UNCHAINED, problem


def test_a_training_outcome_whose_hash_is_not_its_content_is_refused() -> None:
    first = enable(1, 1, None)
    linked = link_event(disable(2, 2, None, "intruder"), head_after(first))
    forged = dataclasses.replace(linked, hash="f" * 64)
    problem = integrity_problem(forged)
    assert problem is not None and reason_of(problem) == ALTERED, problem


def test_a_training_outcome_whose_subject_is_not_its_tenant_is_refused() -> None:
    linked = outcome(TrainingDisabled("k", 2, "intruder", "forged"), 1, None)
    moved = dataclasses.replace(linked, subject="globex", sequence=None, prev_hash=None, hash=None)
    other = link_event(moved, None)
    problem = integrity_problem(other)
    assert problem is not None and reason_of(problem) == MISMATCHED, problem


def test_a_training_outcome_that_does_not_link_never_reaches_the_status() -> None:
    log = _forged_log()
    space = MemorySpace()
    result = space.apply([g for event, position in log for g in project(event, position, KEYS)])
    assert result.applied == 2
    assert result.refused == [
        Refusal(f"{TOPIC}:0", 1, "duplicate"),
        Refusal(f"{TOPIC}:0", 2, "broken-link"),
        Refusal(f"{TOPIC}:0", 3, "broken-link"),
    ]
    shown = status(space.data)
    shown_as = (shown["state"], shown["version"], shown["owner"], shown["reason"])
    assert shown_as == ("disabled", "2", "admin-1", "done")
    assert shown["count_TrainingEnabled"] == "1" and shown["count_TrainingDisabled"] == "1"
    assert space.data[KEYS.training_quarantine(TENANT)] == {
        f"{TOPIC}:0@1": "duplicate",
        f"{TOPIC}:0@2": "broken-link",
        f"{TOPIC}:0@3": "broken-link",
    }
    genuine = log[-1][0]
    assert space.data[KEYS.training_chain(TENANT)] == {"tenant": f"2 {genuine.hash}"}


def test_a_forged_disable_after_the_genuine_enable_leaves_it_enabled() -> None:
    first = enable(1, 1, None)
    forged = disable(2, 2, ChainHead(TENANT, 1, "ab" * 32), actor="intruder")
    space = MemorySpace()
    space.apply([g for i, e in enumerate((first, forged)) for g in project(e, at(i), KEYS)])
    shown = status(space.data)
    assert (shown["state"], shown["version"], shown["owner"]) == ("enabled", "1", "admin-1")


def test_the_rebuild_s_fold_refuses_the_same_training_outcomes() -> None:
    log = _forged_log()
    reference = MemorySpace()
    reference.apply([g for event, position in log for g in project(event, position, KEYS)])
    for cut in range(len(log) + 1):  # any batch boundary
        fold, stats, data = Fold(), FoldStats(), {}
        apply_writes(data, fold.records(log[:cut], KEYS, stats))
        apply_writes(data, fold.records(log[cut:], KEYS, stats))
        assert status(data) == status(reference.data)
        assert data[KEYS.training_quarantine(TENANT)] == reference.data[KEYS.training_quarantine(TENANT)]
        assert data[KEYS.training_chain(TENANT)] == reference.data[KEYS.training_chain(TENANT)]
        assert (stats.applied, stats.refused) == (2, 3)


def test_without_a_head_only_the_chain_s_first_record_links() -> None:
    """As for decisions: a space with no head for the tenant takes sequence 1 only, so a space
    projected before training outcomes were chained must be rebuilt once (docs/training.md)."""
    first = enable(1, 1, None)
    second = disable(2, 2, head_after(first))
    space = MemorySpace()
    result = space.apply(project(second, at(1), KEYS))
    assert result.refused == [Refusal(f"{TOPIC}:0", 1, "bad-genesis")]
    assert KEYS.training(TENANT) not in space.data


PLACED = Placements(3)
HOME = placement(TENANT.encode(), 3)
ELSEWHERE = (HOME + 1) % 3


def test_a_training_outcome_outside_its_tenant_s_partition_is_refused_before_projection() -> None:
    linked = disable(2, 2, head_after(enable(1, 1, None)), actor="intruder")  # links, hashes right
    assert integrity_problem(linked) is None
    assert placement_problem(linked, HOME, PLACED) is None
    for partition in (p for p in range(4) if p != HOME):
        problem = placement_problem(linked, partition, PLACED)
        assert problem is not None and reason_of(problem) == MISPLACED, problem
        assert f"belongs in partition {HOME} of 3, not {partition}" in problem, problem
    unknown = placement_problem(linked, HOME, None)  # no layout known: nothing is trusted
    assert unknown is not None and reason_of(unknown) == MISPLACED, unknown


def test_other_records_are_not_checked_for_their_tenant_s_partition() -> None:
    assert placement_problem(decision(1, None), ELSEWHERE, PLACED) is None


def _records(partition: int, events: list[Event]) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord(TOPIC, partition, offset, 0, 0, TENANT.encode(), codec.encode(e), None, 0, 0, [])
        for offset, e in enumerate(events)
    ]


def test_a_rebuild_skips_a_linked_outcome_read_first_from_another_partition() -> None:
    """The forgery is read before the tenant's next genuine outcome: the old rebuild (and live
    projector) made it the tenant's head (disabled by the intruder) and quarantined the genuine
    disable as a broken link."""
    first = enable(1, 1, None)
    forged = disable(2, 2, head_after(first), actor="intruder")
    genuine = disable(3, 2, head_after(first))
    placements = {CONVERSATION_EVENTS: Placements(3), TOPIC: PLACED}
    home = _records(HOME, [first, genuine])
    stats, checkpoint = ReplayStats(), {}

    def read(partition: int, records: list[ConsumerRecord[bytes, bytes]]) -> list[tuple[Event, Position]]:
        tp = TopicPartition(TOPIC, partition)
        return projectable(tp, records, 10, TOPIC, stats, checkpoint, placements)

    fold, fold_stats, data = Fold(), FoldStats(), {}
    for partition, records in (
        (HOME, home[:1]),
        (ELSEWHERE, _records(ELSEWHERE, [forged])),
        (HOME, home[1:]),
    ):
        apply_writes(data, fold.records(read(partition, records), KEYS, fold_stats))
    shown = status(data)
    assert (shown["state"], shown["version"], shown["owner"], shown["reason"]) == (
        "disabled",
        "2",
        "admin-1",
        "done",
    )
    assert (stats.records, stats.quarantined, fold_stats.applied, fold_stats.refused) == (3, 1, 2, 0)
    assert checkpoint == {f"{TOPIC}:{HOME}": 1, f"{TOPIC}:{ELSEWHERE}": 0}  # progress past it all
    assert data[KEYS.training_chain(TENANT)] == {"tenant": f"2 {genuine.hash}"}
    assert KEYS.training_quarantine(TENANT) not in data
