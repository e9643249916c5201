"""Folding batches in memory equals applying records one by one through the fenced writer (pure).

The reference is ``model.MemorySpace`` (the writer's Lua semantics, checked against Redis by
tests/integration/test_projection_conditions.py): for any records cut into any batches,
``Fold`` + ``apply_writes`` on an empty space must end in the same space. Training outcomes
linked and hashed right but placed in another partition of ``training.audit`` than their
tenant's, anywhere in such a log, are refused before either (``verify.placement_problem``) and
change nothing.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.contracts.chain import ChainHead, decision_chain_key, link
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import Event, derived_event_id, new_event
from ledgerflow.contracts.payloads import (
    ConversationClosed,
    ConversationStarted,
    MessageSubmitted,
    TrainingDisabled,
    TrainingEnabled,
)
from ledgerflow.kafka.placement import Placements, placement
from ledgerflow.projections.conversations import RECENT_DENIALS, TRAINING_OUTCOMES, project
from ledgerflow.projections.fold import Fold, FoldStats, apply_writes, ranks
from ledgerflow.projections.freshwrite import commands
from ledgerflow.projections.keys import Keys
from ledgerflow.projections.model import MemorySpace
from ledgerflow.projections.ops import FencedOps, Once, Position, RedisOp
from ledgerflow.projections.verify import MISPLACED, placement_problem, reason_of
from tests.unit.projections.test_conditions import decision

KEYS = Keys("lf:unit:")
T0 = 1_700_000_000_000_000
EVENTS, DECISIONS, TRAINING = "conversation.events", "policy.decisions", "training.audit"
OUTCOMES = ("allow", "deny", "review", "redact")


def _turn(conv: str, i: int, tenant: str) -> Event:
    return new_event(
        "MessageSubmitted",
        tenant=tenant,
        subject=conv,
        payload=MessageSubmitted(f"t{i}", "user", f"hello {i}", "slm-1", i % 7),
        producer="unit",
        occurred_at_micros=T0 + i,
        event_id=derived_event_id("unit", f"{tenant}/{conv}/{i}"),
    )


def _decision(turn: Event, head: ChainHead | None, outcome: str) -> Event:
    """A decision of ``turn`` with ``outcome``, linked to ``head``."""
    shape = decision(0, None, turn.subject)
    payload = dataclasses.replace(shape.payload, input_event_id=turn.event_id, outcome=outcome)
    unchained = dataclasses.replace(
        shape,
        tenant=turn.tenant,
        payload=payload,
        event_id=derived_event_id("decision", turn.event_id),
        occurred_at=turn.occurred_at,
        sequence=None,
        prev_hash=None,
        hash=None,
    )
    linked = link(unchained.to_json(), head)
    return unchained.with_chain(linked["sequence"], linked["prev_hash"], linked["hash"])


def _training(tenant: str, i: int, head: ChainHead | None) -> Event:
    """A ``training.audit`` outcome of ``tenant`` linked after ``head`` (chained per tenant)."""
    kind = TrainingDisabled if i % 2 else TrainingEnabled
    payload = kind(f"k{i}", i, "admin", "r")
    unchained = new_event(
        type(payload).__name__,
        tenant=tenant,
        subject=tenant,
        payload=payload,
        producer="ledgerflow-training",
        occurred_at_micros=T0 + i,
        event_id=derived_event_id("training", f"{tenant}/{i}"),
    )
    return link_event(unchained, head)


@st.composite
def _log(draw: st.DrawFn) -> list[tuple[Event, Position]]:
    """Two partitions' worth of conversations with turns, decisions (some repeated, some
    forged off the chain, some preceded by a forgery for their turn), duplicate deliveries of
    turns, starts and closes."""
    placed: list[tuple[Event, Position]] = []
    offsets = {EVENTS: 0, DECISIONS: 0, TRAINING: 0}
    heads: dict[str, ChainHead] = {}

    def put(event: Event, topic: str) -> None:
        placed.append((event, Position(topic, 0, offsets[topic])))
        offsets[topic] += 1

    steps = draw(
        st.lists(st.tuples(st.integers(0, 3), st.sampled_from(("a", "b")), st.integers(0, 12)), max_size=40)
    )
    for i, (conv_no, tenant, roll) in enumerate(steps):
        conv = f"c{conv_no}"
        if roll == 12:  # a training outcome: genuine, forged off the tenant's chain, or unchained
            after = heads.get(tenant) if conv_no != 0 else ChainHead(tenant, 7, "cd" * 32)
            outcome = _training(tenant, i, after)
            if conv_no > 0:
                assert outcome.sequence is not None and outcome.hash is not None
                heads[tenant] = ChainHead(tenant, outcome.sequence, outcome.hash)
            if conv_no == 3:
                put(outcome, TRAINING)  # a copy: a duplicate of the head
            if conv_no == 1:
                outcome = dataclasses.replace(outcome, sequence=None, prev_hash=None, hash=None)
            put(outcome, TRAINING)
            continue
        if roll == 0:
            put(_started(conv, i, tenant), EVENTS)
            continue
        if roll == 1:
            put(_closed(conv, i, tenant), EVENTS)
            continue
        turn = _turn(conv, i, tenant)
        put(turn, EVENTS)
        if roll == 2:
            put(dataclasses.replace(turn), EVENTS)  # the same event delivered twice
        key = decision_chain_key(tenant, conv)
        decided = _decision(turn, heads.get(key), OUTCOMES[roll % 4])
        if roll == 3:  # forged: links to nothing (its head is not the chain's)
            decided = _decision(turn, ChainHead(key, 7, "cd" * 32), "allow")
        else:
            assert decided.sequence is not None and decided.hash is not None
            heads[key] = ChainHead(key, decided.sequence, decided.hash)
        if roll == 5:  # no chain fields: projected without a chain condition
            decided = dataclasses.replace(decided, sequence=None, prev_hash=None, hash=None)
        if roll == 6:  # chained under its subject, projected into another conversation
            other = dataclasses.replace(decided.payload, conversation_id="c9")
            decided = dataclasses.replace(decided, payload=other)
        if roll == 11:  # a forgery for this very turn, linked to nothing, before its decision
            put(_decision(turn, ChainHead(key, 7, "cd" * 32), "allow"), DECISIONS)
        put(decided, DECISIONS)
        if roll == 4:
            put(decided, DECISIONS)  # a decision repeated
    return placed


def _started(conv: str, i: int, tenant: str) -> Event:
    return new_event(
        "ConversationStarted",
        tenant=tenant,
        subject=conv,
        payload=ConversationStarted("ann", "slm-1"),
        producer="unit",
        occurred_at_micros=T0 + i,
    )


def _closed(conv: str, i: int, tenant: str) -> Event:
    return new_event(
        "ConversationClosed",
        tenant=tenant,
        subject=conv,
        payload=ConversationClosed("done"),
        producer="unit",
        occurred_at_micros=T0 + i,
    )


def _normal(data: dict[str, Any]) -> dict[str, Any]:
    """Redis has no empty keys."""
    return {k: v for k, v in data.items() if v}


def _cuts(groups: list[FencedOps], cuts: list[int]) -> list[list[FencedOps]]:
    edges = sorted({0, len(groups), *(c % (len(groups) + 1) for c in cuts)})
    return [groups[a:b] for a, b in itertools.pairwise(edges)]


def _folded(batches: list[list[FencedOps]]) -> tuple[dict[str, Any], FoldStats]:
    fold, stats, data = Fold(), FoldStats(), {}
    for batch in batches:
        apply_writes(data, fold.batch(batch, stats))
    return _normal(data), stats


@settings(max_examples=40, deadline=None)
@given(log=_log(), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_folding_any_batches_equals_applying_the_records_one_by_one(
    log: list[tuple[Event, Position]], cuts: list[int]
) -> None:
    groups = [g for event, at in log for g in project(event, at, KEYS)]
    reference = MemorySpace()
    expected = reference.apply(groups)
    folded, stats = _folded(_cuts(groups, cuts))
    assert folded == _normal(reference.data)
    assert (stats.applied, stats.deduped, stats.refused) == (
        expected.applied,
        expected.deduped,
        len(expected.refused),
    )


@settings(max_examples=40, deadline=None)
@given(log=_log(), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_folding_records_straight_equals_folding_their_op_groups(
    log: list[tuple[Event, Position]], cuts: list[int]
) -> None:
    groups = [g for event, at in log for g in project(event, at, KEYS)]
    by_groups, group_stats = _folded(_cuts(groups, cuts))
    fold, stats, data = Fold(), FoldStats(), {}
    edges = sorted({0, len(log), *(c % (len(log) + 1) for c in cuts)})
    for a, b in itertools.pairwise(edges):
        apply_writes(data, fold.records(log[a:b], KEYS, stats))
    assert _normal(data) == by_groups
    assert stats == group_stats


PLACED = Placements(4)
"""``_log``'s tenants belong in partition 0 of 4: where ``_log`` puts their training outcomes."""


@st.composite
def _misplaced(draw: st.DrawFn) -> tuple[list[tuple[Event, Position]], list[tuple[Event, Position]]]:
    """A ``_log``, and the same log with training outcomes inserted in partitions 1-3 of
    ``training.audit``, each linked after its tenant's last chained outcome before it (the head
    a projection reading it there would hold) and hashed right: what anyone can write."""
    log = draw(_log())
    assert all(placement(t.encode(), PLACED.partitions) == 0 for t in ("a", "b"))
    inserts = draw(
        st.lists(st.tuples(st.integers(0, 400), st.sampled_from(("a", "b")), st.integers(1, 3)), max_size=6)
    )
    at_index: dict[int, list[tuple[str, int]]] = {}
    for where, tenant, partition in inserts:
        at_index.setdefault(where % (len(log) + 1), []).append((tenant, partition))
    heads: dict[str, ChainHead] = {}
    offsets = dict.fromkeys(range(1, 4), 0)
    mixed: list[tuple[Event, Position]] = []
    for i in range(len(log) + 1):
        for n, (tenant, partition) in enumerate(at_index.get(i, [])):
            forged = _training(tenant, 1000 + 10 * i + n, heads.get(tenant))
            mixed.append((forged, Position(TRAINING, partition, offsets[partition])))
            offsets[partition] += 1
        if i < len(log):
            event, at = log[i]
            mixed.append((event, at))
            if isinstance(event.payload, TRAINING_OUTCOMES) and event.sequence and event.hash:
                heads[event.tenant] = ChainHead(event.tenant, event.sequence, event.hash)
    return log, mixed


@settings(max_examples=40, deadline=None)
@given(logs=_misplaced(), cuts=st.lists(st.integers(0, 400), max_size=6))
def test_training_outcomes_outside_their_tenant_s_partition_change_nothing(
    logs: tuple[list[tuple[Event, Position]], list[tuple[Event, Position]]], cuts: list[int]
) -> None:
    """Read first, such an outcome used to become its tenant's head (its status shown) and the
    genuine chain's next outcome was quarantined as a broken link."""
    log, mixed = logs
    kept = []
    for event, at in mixed:
        problem = placement_problem(event, at.partition, PLACED) if at.topic == TRAINING else None
        if problem is None:
            kept.append((event, at))
        else:
            assert reason_of(problem) == MISPLACED and at.partition != 0, problem
    assert kept == log
    reference = MemorySpace()
    reference.apply([g for event, at in log for g in project(event, at, KEYS)])
    fold, data = Fold(), {}
    edges = sorted({0, len(kept), *(c % (len(kept) + 1) for c in cuts)})
    for a, b in itertools.pairwise(edges):
        apply_writes(data, fold.records(kept[a:b], KEYS))
    assert _normal(data) == _normal(reference.data)


def test_a_straight_fold_trims_denials_as_the_ops_do() -> None:
    """More denials than a tenant keeps, across batches: the straight fold keeps the same 50."""
    log, head = [], None
    for i in range(RECENT_DENIALS + 7):
        turn = _turn("c1", i, "a")
        decided = _decision(turn, head, "deny")
        assert decided.sequence is not None and decided.hash is not None
        head = ChainHead(decision_chain_key("a", "c1"), decided.sequence, decided.hash)
        log += [(turn, Position(EVENTS, 0, i)), (decided, Position(DECISIONS, 0, i))]
    fold, data = Fold(), {}
    for a in range(0, len(log), 9):
        apply_writes(data, fold.records(log[a : a + 9], KEYS))
    groups = [g for event, at in log for g in project(event, at, KEYS)]
    assert _normal(data) == _folded([groups])[0]
    assert len(data[KEYS.tenant_denials("a")]) == RECENT_DENIALS


_op = st.one_of(
    st.tuples(st.just("HSET"), st.sampled_from("fg"), st.integers(0, 3)),
    st.tuples(st.just("HINCRBY"), st.sampled_from("fg"), st.integers(-2, 3)),
    st.tuples(st.just("RPUSH"), st.just(""), st.integers(0, 3)),
    st.tuples(st.just("ZADD"), st.sampled_from("mnop"), st.integers(0, 3)),
    st.tuples(st.just("ZREMRANGEBYRANK"), st.just(""), st.integers(1, 3)),
)


def _redis_op(entity: int, command: str, name: str, value: int) -> RedisOp:
    key = f"lf:unit:e:{{{entity}}}"
    if command == "HSET":
        return RedisOp("HSET", key, (name, value))
    if command == "HINCRBY":
        return RedisOp("HINCRBY", key, (name, value))
    if command == "RPUSH":
        return RedisOp("RPUSH", key + ":list", (str(value),))
    if command == "ZADD":
        return RedisOp("ZADD", key + ":z", (value, name))
    return RedisOp("ZREMRANGEBYRANK", key + ":z", (0, -value - 1))  # keep the top ``value``


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(
        st.tuples(st.integers(0, 1), st.integers(0, 6), st.sampled_from(("x", "y", None)), st.lists(_op)),
        max_size=25,
    ),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_redeliveries_counters_overwrites_and_rank_trims_fold_exactly(
    records: list[tuple[int, int, str | None, list[tuple[str, str, int]]]], cuts: list[int]
) -> None:
    """Hostile op mixes: offsets that go back (redeliveries the fence skips), a field set
    then incremented (and the other way round) in one batch, trims of sorted sets that
    other batches wrote, one id counted twice."""
    groups = []
    for entity, offset, once, ops in records:
        key = f"lf:unit:e:{{{entity}}}"
        groups.append(
            FencedOps(
                key + ":applied",
                Position(EVENTS, 0, offset),
                tuple(_redis_op(entity, *op) for op in ops),
                Once(key + ":seen", once) if once else None,
            )
        )
    reference = MemorySpace()
    reference.apply(groups)
    assert _folded(_cuts(groups, cuts))[0] == _normal(reference.data)


def test_each_key_gets_one_command_per_kind_per_batch() -> None:
    """The point of the fold: a batch of a conversation's turns is a handful of commands."""
    turns = [_turn("c1", i, "a") for i in range(200)]
    groups = [g for i, t in enumerate(turns) for g in project(t, Position(EVENTS, 0, i), KEYS)]
    sent = list(commands(Fold().batch(groups)))
    assert len(groups) == 400 and len(sent) <= 15
    (push,) = [c for c in sent if c[0] == "RPUSH"]
    assert len(push) == 2 + 200  # every turn, in order, in one RPUSH
    assert [c for c in sent if c[:3] == ["HINCRBY", KEYS.tenant("a"), "turns"]] == [
        ["HINCRBY", KEYS.tenant("a"), "turns", "200"]
    ]


def test_a_trim_removes_members_an_earlier_batch_wrote() -> None:
    key = "lf:unit:e:{1}:z"
    first = FencedOps(
        "f", Position(EVENTS, 0, 0), (RedisOp("ZADD", key, (1, "m")), RedisOp("ZADD", key, (2, "n")))
    )
    trim = FencedOps("f", Position(EVENTS, 0, 1), (RedisOp("ZREMRANGEBYRANK", key, (0, -2)),))
    fold, data = Fold(), {}
    apply_writes(data, fold.batch([first]))
    apply_writes(data, fold.batch([trim]))
    assert data[key] == {"n": 2.0}


def test_rank_ranges_read_as_redis_reads_them() -> None:
    """ZREMRANGEBYRANK 0 -51 keeps the top 50: on 30 members it removes nothing (the model of
    the writer used to remove 10, reading the stop -21 as a Python slice end)."""
    assert ranks(30, 0, -51) == slice(0, 0)
    assert ranks(51, 0, -51) == slice(0, 1)
    assert ranks(5, 0, -1) == slice(0, 5)
    assert ranks(5, -2, -1) == slice(3, 5)
    assert ranks(5, 3, 10) == slice(3, 5)
    assert ranks(5, 4, 2) == slice(0, 0)
    assert ranks(0, 0, -1) == slice(0, 0)
