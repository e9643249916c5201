"""The hot path's batch loop (agents/batchloop.py) through an in-memory record source: what it
hands to which agent, and that it commits only what was handled."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from ledgerflow.agents.batching import Route, advance, next_offsets, split, without
from ledgerflow.agents.batchloop import (
    FETCH_WAIT_MS,
    LINGER_ENV,
    LINGER_S,
    BatchLoop,
    fetch_options,
    linger_from,
)
from ledgerflow.agents.shared import SharedDecodes
from ledgerflow.contracts import codec
from ledgerflow.errors import DecodeError, ValidationError
from tests.unit.agents.memory import Record, turn

EVENTS, DECISIONS = "conversation.events", "policy.decisions"


class Source:
    """Batches to hand out, in order, and the offsets committed (a commit can be made to fail)."""

    def __init__(self, *batches: Mapping[Any, Sequence[Record]]) -> None:
        self.batches = list(batches)
        self.commits: list[dict[tuple[str, int], int]] = []
        self.failing_commits = 0

    async def getmany(self, max_records: int, timeout_ms: int) -> Mapping[Any, Sequence[Record]]:
        return self.batches.pop(0) if self.batches else {}

    async def commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        if self.failing_commits:
            self.failing_commits -= 1
            raise RuntimeError("rebalance in progress")
        self.commits.append(dict(offsets))


def rec(topic: str, partition: int, offset: int, value: bytes = b"v") -> Record:
    return Record(topic, partition, offset, b"k", value)


def fetched(*records: Record) -> dict[tuple[str, int], list[Record]]:
    out: dict[tuple[str, int], list[Record]] = {}
    for r in records:
        out.setdefault((r.topic, r.partition), []).append(r)
    return out


class Agent:
    def __init__(self, fail: int = 0) -> None:
        self.got: list[list[Record]] = []
        self.fail = fail
        self.release = asyncio.Event()
        self.release.set()
        self.running = asyncio.Event()

    async def handle(self, records: list[Any]) -> None:
        self.running.set()
        await self.release.wait()
        if self.fail:
            self.fail -= 1
            raise RuntimeError("bug")
        self.got.append(list(records))


def test_split_gives_each_agent_its_topics_records_in_offset_order() -> None:
    a, b = Agent(), Agent()
    routes = [
        Route("policy", frozenset({EVENTS}), a.handle),
        Route("projector", frozenset({EVENTS, DECISIONS}), b.handle),
    ]
    batch = fetched(rec(EVENTS, 0, 5), rec(EVENTS, 0, 6), rec(DECISIONS, 0, 1), rec(EVENTS, 1, 2))
    parts = {
        route.name: [(r.topic, r.partition, r.offset) for r in records]
        for route, records in split(batch, routes)
    }
    assert parts["policy"] == [(EVENTS, 0, 5), (EVENTS, 0, 6), (EVENTS, 1, 2)]
    assert parts["projector"] == [(EVENTS, 0, 5), (EVENTS, 0, 6), (DECISIONS, 0, 1), (EVENTS, 1, 2)]
    only_decisions = split(fetched(rec(DECISIONS, 3, 0)), routes)
    assert [route.name for route, _ in only_decisions] == ["projector"]  # no empty batch for the policy agent


def test_offsets_to_commit_are_the_next_ones_and_never_move_back() -> None:
    handled = next_offsets(fetched(rec(EVENTS, 0, 5), rec(EVENTS, 0, 9), rec(DECISIONS, 2, 0)))
    assert handled == {(EVENTS, 0): 10, (DECISIONS, 2): 1}
    pending = {(EVENTS, 0): 12}
    advance(pending, handled)
    assert pending == {(EVENTS, 0): 12, (DECISIONS, 2): 1}  # a late, older batch cannot lower it
    assert without(pending, {(EVENTS, 0)}) == {(DECISIONS, 2): 1}


def test_a_batch_is_committed_only_after_every_agent_handled_it() -> None:
    asyncio.run(_a_batch_is_committed_only_after_every_agent_handled_it())


async def _a_batch_is_committed_only_after_every_agent_handled_it() -> None:
    a, b = Agent(), Agent()
    b.release.clear()
    source = Source(fetched(rec(EVENTS, 0, 0), rec(EVENTS, 0, 1)))
    loop = BatchLoop(
        source,
        [Route("a", frozenset({EVENTS}), a.handle), Route("b", frozenset({EVENTS}), b.handle)],
        commit_every_s=0,
    )
    step = asyncio.create_task(loop.step())
    await b.running.wait()
    await asyncio.sleep(0.01)
    assert a.got and not source.commits and loop.pending == {}  # one agent done is not enough
    b.release.set()
    assert await step == 2
    assert source.commits == [{(EVENTS, 0): 2}]


def test_a_failing_agent_stops_the_batch_and_nothing_of_it_is_committed() -> None:
    asyncio.run(_a_failing_agent_stops_the_batch_and_nothing_of_it_is_committed())


async def _a_failing_agent_stops_the_batch_and_nothing_of_it_is_committed() -> None:
    bad, other = Agent(fail=1), Agent()
    other.release.clear()  # still busy when the first fails: cancelled, not left running
    source = Source(fetched(rec(EVENTS, 0, 0)))
    loop = BatchLoop(
        source,
        [Route("bad", frozenset({EVENTS}), bad.handle), Route("other", frozenset({EVENTS}), other.handle)],
        commit_every_s=0,
    )
    with pytest.raises(ExceptionGroup):
        await loop.step()
    assert source.commits == [] and loop.pending == {}
    assert other.got == []


def test_a_failed_commit_is_carried_by_the_next_one() -> None:
    asyncio.run(_a_failed_commit_is_carried_by_the_next_one())


async def _a_failed_commit_is_carried_by_the_next_one() -> None:
    agent = Agent()
    source = Source(fetched(rec(EVENTS, 0, 0)), fetched(rec(EVENTS, 1, 4)))
    source.failing_commits = 1
    loop = BatchLoop(source, [Route("a", frozenset({EVENTS}), agent.handle)], commit_every_s=0)
    await loop.step()
    assert source.commits == [] and loop.pending == {(EVENTS, 0): 1}
    await loop.step()
    assert source.commits == [{(EVENTS, 0): 1, (EVENTS, 1): 5}] and loop.pending == {}


def test_commits_wait_for_the_interval() -> None:
    asyncio.run(_commits_wait_for_the_interval())


async def _commits_wait_for_the_interval() -> None:
    now = [0.0]
    agent = Agent()
    source = Source(fetched(rec(EVENTS, 0, 0)), fetched(rec(EVENTS, 0, 1)))
    loop = BatchLoop(
        source, [Route("a", frozenset({EVENTS}), agent.handle)], commit_every_s=0.5, clock=lambda: now[0]
    )
    await loop.step()
    assert source.commits == []
    now[0] = 0.6
    await loop.step()
    assert source.commits == [{(EVENTS, 0): 2}]


def test_revocation_waits_for_the_batch_in_flight_then_commits_what_was_handled() -> None:
    asyncio.run(_revocation_waits_for_the_batch_in_flight_then_commits_what_was_handled())


async def _revocation_waits_for_the_batch_in_flight_then_commits_what_was_handled() -> None:
    agent = Agent()
    agent.release.clear()
    source = Source(fetched(rec(EVENTS, 0, 7), rec(EVENTS, 1, 3)))
    loop = BatchLoop(source, [Route("a", frozenset({EVENTS}), agent.handle)], commit_every_s=60)
    told: list[set[tuple[str, int]]] = []

    async def forget(partitions: set[tuple[str, int]]) -> None:
        told.append(partitions)

    loop.on_revoked.append(forget)
    step = asyncio.create_task(loop.step())
    await agent.running.wait()
    revoke = asyncio.create_task(loop.revoked({(EVENTS, 0)}))
    await asyncio.sleep(0.01)
    assert told == []  # the batch in flight finishes before the partitions move
    agent.release.set()
    await step
    await revoke
    assert told == [{(EVENTS, 0)}]
    assert source.commits == [{(EVENTS, 0): 8}]  # what was handled of the revoked partition
    assert loop.pending == {(EVENTS, 1): 4}  # still ours: committed with the next commit


def test_a_turn_is_decoded_once_per_batch_for_both_agents() -> None:
    shared = SharedDecodes()
    value = codec.encode(turn("c-1", 1))
    msg = Record(EVENTS, 0, 0, b"c-1", value)
    first = shared.decode(msg, EVENTS)
    assert shared.decode(msg, EVENTS) is first and shared.hits == 1
    shared.batch_done()
    again = shared.decode(msg, EVENTS)
    assert again is not first and again == first  # nothing outlives its batch


def test_a_poison_record_is_refused_to_both_agents() -> None:
    shared = SharedDecodes()
    msg = Record(EVENTS, 0, 0, b"c-1", b"\x00not avro")
    for _ in range(2):
        with pytest.raises(DecodeError):
            shared.decode(msg, EVENTS)
    assert shared.hits == 0


def test_a_written_decision_is_taken_only_with_its_exact_bytes_and_only_once() -> None:
    shared = SharedDecodes()
    decision = turn("c-1", 1)  # any record: the store does not look inside
    shared.wrote(DECISIONS, 2, 10, b"bytes", decision)
    assert (
        shared.take_written(Record(DECISIONS, 2, 10, b"c-1", b"other bytes")) is None
    )  # tampered: decode it
    shared.wrote(DECISIONS, 2, 10, b"bytes", decision)
    assert shared.take_written(Record(DECISIONS, 2, 11, b"c-1", b"bytes")) is None  # another position
    assert shared.take_written(Record(DECISIONS, 2, 10, b"c-1", b"bytes")) is decision
    assert shared.take_written(Record(DECISIONS, 2, 10, b"c-1", b"bytes")) is None  # taken once


def test_written_decisions_age_out_and_are_forgotten_with_their_partition() -> None:
    shared = SharedDecodes(written_limit=2)
    decision = turn("c-1", 1)
    for offset in range(3):
        shared.wrote(DECISIONS, 0, offset, b"b", decision)
    assert shared.take_written(Record(DECISIONS, 0, 0, None, b"b")) is None  # the oldest aged out
    shared.forget({(DECISIONS, 0)})
    assert shared.take_written(Record(DECISIONS, 0, 2, None, b"b")) is None


def test_with_a_linger_the_broker_holds_each_fetch_for_it_and_a_backlog_fills_it_at_once() -> None:
    lingering = fetch_options(0.02)
    assert lingering["fetch_max_wait_ms"] == 20
    assert lingering["fetch_min_bytes"] >= 1024 * 1024  # more than a moderate load brings in 20 ms
    assert fetch_options(0.0) == {"fetch_max_wait_ms": FETCH_WAIT_MS, "fetch_min_bytes": 1}  # off
    assert fetch_options(0.0004)["fetch_max_wait_ms"] == 1  # never 0: that would spin


@pytest.mark.parametrize("raw", ["abc", "nan", "-1", "inf", "1e9", "1001"])
def test_a_linger_setting_out_of_range_is_refused_in_one_line(raw: str) -> None:
    with pytest.raises(ValidationError, match=LINGER_ENV) as refused:
        linger_from({LINGER_ENV: raw})
    assert "\n" not in str(refused.value)


def test_the_linger_setting_defaults_and_can_be_turned_off() -> None:
    assert linger_from({}) == LINGER_S
    assert linger_from({LINGER_ENV: ""}) == LINGER_S
    assert linger_from({LINGER_ENV: "0"}) == 0.0
    assert linger_from({LINGER_ENV: "5"}) == pytest.approx(0.005)
