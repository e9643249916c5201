"""The usage agent's own decisions, through in-memory ports (tests/unit/agents/memory.py):
windows written once and chained per (tenant, source partition), duplicate deliveries by event id, poison and
negative token counts, the re-fold after a restart (writing only what is missing), a windows
log that reads shorter than seen, the clock closing idle windows, a failed write. The Kafka
adapters behind the same ports are integration-tested (test_training_and_usage,
test_poison_records, test_crash)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import uuid
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.agents.usage import LogNotReady, Ports, UsageAgent, WindowSizeChanged
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead, ChainVerifier, Located
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import MAX_TOKENS, Event
from ledgerflow.contracts.payloads import UsageWindow
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.placement import Placements, placement
from ledgerflow.metrics import WORKER_REGISTRY
from ledgerflow.policy.wire import chain_key
from ledgerflow.usage.windows import WindowConfig, window_bounds
from ledgerflow.usage.wire import legacy_late_id
from tests.unit.agents.memory import T0, InputTopic, KeyedTopic, Letters, Record, chained, turn, unvalidated

SETTINGS = Settings(state_dir=Path("/nonexistent"))
SECOND = 1_000_000
CONFIG = WindowConfig()  # 60 s windows, 10 s lateness
START, END = window_bounds(CONFIG, T0)


def at(seconds: float, n: int, tenant: str = "acme", tokens: int = 3) -> Event:
    """Turn ``n`` of ``tenant``'s conversation, ``seconds`` after the start of T0's window."""
    t = turn(f"{tenant}-conv", n, tenant=tenant)
    payload = dataclasses.replace(t.payload, tokens=tokens)
    return dataclasses.replace(t, occurred_at=START + int(seconds * SECOND), payload=payload)


CLOSER = 75  # a turn this many seconds into the window moves the watermark past its end


class World:
    """One usage agent wired to in-memory ports, with a clock the test moves (µs)."""

    def __init__(self) -> None:
        self.inputs, self.windows, self.letters = InputTopic(), KeyedTopic(), Letters()
        self.now = END + 5 * SECOND
        self.agent = self.new_agent()

    def new_agent(self) -> UsageAgent:
        """A fresh owner (another worker, or this one after a restart) on the same logs."""
        ports = Ports(self.inputs, self.windows, self.letters)
        return UsageAgent(SETTINGS, ports, CONFIG, clock=lambda: self.now)

    def handle(self, records: list[Record]) -> None:
        asyncio.run(self.agent.handle(records))

    def send(self, *events: Event, partition: int = 0) -> list[Record]:
        return [self.inputs.add(partition, e) for e in events]

    def totals(self) -> list[tuple[str, int, int, int, bool]]:
        """(tenant, window start, tokens, events, correction) of each record written, by tenant."""
        found = []
        for record in sorted(self.windows.events(), key=lambda r: (r.tenant, r.sequence or 0)):
            p = record.payload
            assert isinstance(p, UsageWindow)
            found.append((record.tenant, p.window_start, p.tokens, p.events, p.correction))
        return found


def test_each_new_input_partition_is_claimed_before_the_windows_are_read_back() -> None:
    """The claim fences earlier writers for that partition (agents/keyedlog.py): read first, and a
    batch of windows a worker that lost the partition was still retrying could land after it."""
    world = World()
    world.handle(world.send(at(1, 1)) + world.send(at(2, 1, "globex"), partition=1))
    assert world.windows.calls == [("claim", 0), ("claim", 1), ("read", -1)]
    world.handle(world.send(at(3, 2)))
    assert len(world.windows.calls) == 3, "partitions already folded are not claimed (nor read) again"
    world.handle(world.send(at(4, 1, "initech"), partition=2))
    assert world.windows.calls[3:] == [("claim", 2), ("read", -1)], "a new partition: claimed, then read"


def test_a_closed_window_is_written_once_per_tenant_andchained() -> None:
    world = World()
    world.handle(
        world.send(at(1, 1), at(2, 2, tokens=4), at(3, 1, "globex"), at(CLOSER, 3), at(CLOSER, 2, "globex"))
    )
    assert world.totals() == [("acme", START, 7, 2, False), ("globex", START, 3, 1, False)]
    assert world.letters.sent == []
    assert chained(world.windows.events())


def test_a_duplicate_delivery_of_a_turn_is_counted_once() -> None:
    world = World()
    world.handle(world.send(at(1, 1), at(1, 1)))
    world.handle(world.send(at(1, 1), at(CLOSER, 2)))
    assert world.totals() == [("acme", START, 3, 1, False)]


def test_poison_and_a_negative_token_count_are_skipped_and_the_other_turns_counted() -> None:
    world = World()
    good = world.send(at(1, 1))
    negative = world.inputs.append(0, unvalidated(at(2, 2), tokens=-5), b"acme-conv")
    huge = world.inputs.append(0, unvalidated(at(2, 3), tokens=MAX_TOKENS + 1), b"acme-conv")
    garbage = world.inputs.append(0, b"\xc3\x01garbage", b"acme-conv")
    wrong_key = world.inputs.append(0, unvalidated(at(2, 4)), b"other-conv")
    world.handle([*good, negative, huge, garbage, wrong_key, *world.send(at(CLOSER, 5))])
    assert world.totals() == [("acme", START, 3, 1, False)]
    # The policy agent dead-letters this topic's poison: the usage agent only skips it.
    assert world.letters.sent == []


def test_a_late_turn_for_a_closed_window_writes_a_correction_with_the_full_totals() -> None:
    world = World()
    world.handle(world.send(at(1, 1), at(CLOSER, 2)))
    world.handle(world.send(at(5, 3, tokens=10)))  # within retention: the window is remembered
    assert world.totals() == [("acme", START, 3, 1, False), ("acme", START, 13, 2, True)]
    assert chained(world.windows.events())


def test_a_restart_refolds_the_partition_and_writes_nothing_twice() -> None:
    world = World()
    world.handle(world.send(at(1, 1), at(CLOSER, 2)))
    world.agent = world.new_agent()
    world.handle(world.send(at(CLOSER + 1, 3)))
    assert world.inputs.reads[-1] == (0, 0, 3), "the re-fold reads the partition to its end, the delivery too"
    assert world.totals() == [("acme", START, 3, 1, False)]


def test_a_restart_writes_the_window_a_failed_owner_folded_but_never_wrote() -> None:
    world = World()
    world.windows.fail_writes = True
    with pytest.raises(InfrastructureError):
        world.handle(world.send(at(1, 1), at(CLOSER, 2)))
    world.windows.fail_writes = False
    world.agent.revoke({0})  # what handle_until_done does before retrying
    world.handle(world.send(at(CLOSER + 1, 3)))
    world.handle(world.send(at(CLOSER + 2, 4)))
    assert world.totals() == [("acme", START, 3, 1, False)]
    assert chained(world.windows.events())


def test_a_windows_log_reading_shorter_than_seen_is_waited_for_never_taken_as_complete() -> None:
    world = World()
    world.handle(world.send(at(1, 1), at(CLOSER, 2)))
    (written,) = [p for p, log in world.windows.partitions.items() if log]
    world.agent.revoke({0})  # a rebalance: usage.windows is read again on next use
    world.windows.visible[written] = 0  # the broker restarts and reads short
    with pytest.raises(LogNotReady, match="not readable to its end yet"):
        world.handle(world.send(at(CLOSER + 1, 3)))
    world.windows.visible.clear()
    world.handle(world.send(at(CLOSER + 2, 4)))
    assert world.totals() == [("acme", START, 3, 1, False)], "the short read wrote the window again"


def test_the_tick_closes_an_idle_partitions_window_by_the_clock() -> None:
    world = World()
    world.handle(world.send(at(1, 1)))
    world.now = END + CONFIG.lateness_micros - 1
    asyncio.run(world.agent.tick())
    assert world.totals() == [], "the window is still open"
    world.now = END + CONFIG.lateness_micros
    asyncio.run(world.agent.tick())
    asyncio.run(world.agent.tick())
    assert world.totals() == [("acme", START, 3, 1, False)]
    assert world.windows.events()[0].occurred_at == world.now


def test_the_tick_before_any_batch_writes_nothing() -> None:
    world = World()
    asyncio.run(world.agent.tick())
    assert world.windows.events() == []


def test_two_workers_sharing_a_tenant_keep_one_unbroken_chain_each() -> None:
    # A tenant's turns are spread over every input partition; each owner writes the windows it
    # folds. Chained per tenant, the second writer (which never read the first one's head)
    # restarted the tenant's chain at sequence 1 — the audit's chain.bad-genesis.
    world = World()
    other = world.new_agent()  # a second worker, owning input partition 1
    world.handle(world.send(at(1, 1), at(CLOSER, 2), partition=0))
    asyncio.run(other.handle(world.send(at(2, 3, tokens=5), at(CLOSER, 4), partition=1)))
    written = world.windows.events()
    assert len(written) == 2 and {r.tenant for r in written} == {"acme"}
    assert len({chain_key(r) for r in written}) == 2, "one chain per (tenant, source partition)"
    assert chained(written, key=chain_key)
    findings = ChainVerifier("usage.windows", from_start=True)
    problems = [
        findings.feed(Located("usage.windows", 0, i, chain_key(r), r.to_json()))
        for i, r in enumerate(written)
    ]
    assert [p for p in problems if p is not None] + findings.finish() == []


def test_a_window_the_wall_clock_closed_is_corrected_not_lost_after_a_restart() -> None:
    """The tick closed an idle window (rev 0 = 10); after a restart the re-fold, which replays
    event time only, had it open, and the on-time turn that followed re-derived rev 0 — an id
    already written, skipped: its 20 tokens were lost. Now the re-fold is reconciled with the
    windows written, and the turn is a correction."""
    w = World()
    w.handle(w.send(at(5, 1, tokens=10)))
    w.now = END + 15 * SECOND
    asyncio.run(w.agent.tick())  # idle: closed by the wall clock
    w.agent = w.new_agent()  # restart
    w.handle(w.send(at(30, 2, tokens=20)))  # on time by event time
    w.handle(w.send(at(200, 3, tokens=1)))
    asyncio.run(w.agent.tick())
    ours = sorted(
        (e.payload.revision, e.payload.tokens) for e in w.windows.events() if e.payload.window_start == START
    )
    assert ours[-1] == (1, 30), ours


def test_a_late_turn_after_a_restart_gets_the_next_revision() -> None:
    w = World()
    w.handle(w.send(at(5, 1, tokens=10)))
    w.now = END + 15 * SECOND
    asyncio.run(w.agent.tick())
    w.handle(w.send(at(30, 2, tokens=20)))  # rev 1 = 30
    w.handle(w.send(at(200, 3, tokens=1)))
    w.agent = w.new_agent()
    w.handle(w.send(at(40, 4, tokens=400)))  # late: rev 2 = 430, not a re-derived rev 1 (skipped)
    ours = sorted(
        (e.payload.revision, e.payload.tokens) for e in w.windows.events() if e.payload.window_start == START
    )
    assert ours == [(0, 10), (1, 30), (2, 430)], ours


PAST_RETENTION = (CONFIG.retention_micros + CONFIG.lateness_micros) // SECOND + 70  # START's window forgotten


def late_deltas(world: World) -> list[tuple[str, int]]:
    """(event id, tokens) of each ``LateUsage`` written (revision -1), in log order."""
    found = []
    for record in world.windows.events():
        p = record.payload
        assert isinstance(p, UsageWindow)
        if p.revision < 0:
            found.append((record.event_id, p.tokens))
    return found


def test_two_late_turns_in_the_same_microsecond_are_two_deltas_also_after_a_restart() -> None:
    """Both turns are past retention, for one window, at one ``occurred_at``: their ``LateUsage``
    ids were derived from (tenant, model, window, partition, occurred_at) alone, so the second was
    taken for the first one written and its 7 tokens were lost."""
    world = World()
    world.handle(world.send(at(1, 1), at(PAST_RETENTION, 2)))
    world.handle(world.send(at(5, 3, tokens=4), at(5, 4, tokens=7)))
    world.handle(world.send(at(5, 5, tokens=2)))
    deltas = late_deltas(world)
    assert sorted(tokens for _, tokens in deltas) == [2, 4, 7]
    assert len({ident for ident, _ in deltas}) == 3
    world.agent = world.new_agent()  # a replay re-derives the same ids: nothing written twice
    world.handle(world.send(at(PAST_RETENTION + 1, 6)))
    assert late_deltas(world) == deltas
    assert chained(world.windows.events(), key=chain_key)


def test_a_late_turn_delivered_again_after_a_restart_is_one_delta() -> None:
    world = World()
    late = at(5, 3, tokens=4)
    world.handle(world.send(at(1, 1), at(PAST_RETENTION, 2)))
    world.handle(world.send(late))  # after the first batch (a fresh agent's re-fold): a live late turn
    world.agent = world.new_agent()  # the new owner's dedupe window is empty: the id recognises it
    world.handle(world.send(late))
    assert [tokens for _, tokens in late_deltas(world)] == [4]


def test_a_delta_written_under_its_old_id_is_not_written_again_by_a_replay() -> None:
    """A ``LateUsage`` written before ids named the turn: the re-fold after the upgrade derives a
    new id for it, and recognises the old one (``legacy_late_id``) instead of counting it twice."""
    world = World()
    world.handle(world.send(at(1, 1), at(PAST_RETENTION, 2)))
    world.handle(world.send(at(5, 3, tokens=4)))
    (log,) = [log for log in world.windows.partitions.values() if log]
    heads: dict[str, ChainHead] = {}
    for i, raw in enumerate(log):  # as the old code wrote it: the old ids, chained (hashed) as such
        event = codec.decode(raw.value or b"")
        legacy = legacy_late_id(event)
        relinked = link_event(
            dataclasses.replace(event, event_id=legacy or event.event_id), heads.get(chain_key(event))
        )
        heads[chain_key(event)] = ChainHead(chain_key(event), relinked.sequence or 0, relinked.hash or "")
        log[i] = dataclasses.replace(raw, value=codec.encode(relinked))
    world.agent = world.new_agent()
    world.handle(world.send(at(PAST_RETENTION + 1, 4)))
    assert [tokens for _, tokens in late_deltas(world)] == [4]


def test_a_changed_window_size_is_refused_before_anything_is_written_again() -> None:
    """The windows were written 60 s wide; the worker restarted with 30 s windows and re-folded
    the partition: the same turns written again under new windows, counted twice downstream."""
    world = World()
    world.handle(world.send(at(1, 1), at(2, 2, "globex"), at(CLOSER, 3)))
    before = list(world.windows.events())
    refused: list[str] = []
    ports = Ports(world.inputs, world.windows, world.letters)
    world.agent = UsageAgent(
        SETTINGS, ports, WindowConfig(size_micros=30 * SECOND), clock=lambda: world.now, refuse=refused.append
    )
    with pytest.raises(WindowSizeChanged, match="is 30 s but usage.windows holds windows of 60 s"):
        world.handle(world.send(at(CLOSER + 100, 4)))
    asyncio.run(world.agent.tick())
    assert world.windows.events() == before
    assert len(refused) == 1 and "LEDGERFLOW_USAGE_WINDOW_S" in refused[0]
    world.agent = world.new_agent()  # set back: the history is recognised, nothing written twice
    world.handle(world.send(at(CLOSER + 100, 5)))
    assert [t for t in world.totals() if t[1] == START] == [
        ("acme", START, 3, 1, False),
        ("globex", START, 3, 1, False),
    ]


def test_a_record_of_another_producer_names_no_size() -> None:
    """Written from outside (the audit reports it): it does not stop the agent."""
    world = World()
    world.handle(world.send(at(1, 1), at(CLOSER, 2)))
    (log,) = [log for log in world.windows.partitions.values() if log]
    event = codec.decode(log[0].value or b"")
    forged = dataclasses.replace(
        event,
        event_id=str(uuid.uuid4()),
        producer="someone-else",
        payload=dataclasses.replace(event.payload, window_end=START + 1),
    )
    log.append(dataclasses.replace(log[0], offset=len(log), value=codec.encode(forged)))
    world.agent = world.new_agent()
    world.handle(world.send(at(CLOSER + 1, 3)))
    assert world.totals()[0] == ("acme", START, 3, 1, False)


def test_a_turn_outside_its_conversations_partition_is_not_counted_there() -> None:
    """Misrouted (kafka/placement.py): the policy agent dead-letters it, and `dlq replay` puts it
    where its key belongs; counted there too, its tokens would be charged twice."""
    world = World()
    home = placement(b"acme-conv", 3)
    world.agent = UsageAgent(
        SETTINGS,
        Ports(world.inputs, world.windows, world.letters),
        CONFIG,
        clock=lambda: world.now,
        placements=Placements(3),
    )
    other = (home + 1) % 3
    local = next(t for n in range(1000) if placement(f"{(t := f't{n}')}-conv".encode(), 3) == other)
    # The stray turn, then a turn of a conversation that belongs there, late enough to close the window.
    world.handle(world.send(at(1, 1, tokens=100), at(CLOSER, 1, local), partition=other))
    world.handle(world.send(at(2, 2), at(CLOSER, 3), partition=home))
    assert world.totals() == [("acme", START, 3, 1, False)], "the stray turn's 100 tokens not counted"
    assert world.letters.sent == []  # the policy agent's to dead-letter


def test_a_record_written_straight_to_usage_windows_steers_nothing() -> None:
    """Anyone with access to Kafka can append to ``usage.windows``: a record naming this agent as its
    producer, with another window size, or the id of a window not written yet, or a chain head of
    its own. Read back, only records that are the next link of their chain count."""
    world = World()
    world.handle(world.send(at(1, 1), at(CLOSER, 2)))  # one window written
    (genuine,) = world.windows.events()
    assert isinstance(genuine.payload, UsageWindow)
    other_size = dataclasses.replace(
        genuine,
        event_id="ffffffff-ffff-4fff-bfff-ffffffffffff",
        payload=dataclasses.replace(genuine.payload, window_end=genuine.payload.window_start + 30 * SECOND),
    ).with_chain(2, "5a" * 32, "6b" * 32)
    asyncio.run(world.windows.write([(0, genuine.tenant.encode(), codec.encode(other_size))]))
    world.agent = world.new_agent()  # a restart reads the log back
    world.handle(world.send(at(CLOSER + 60, 3)))  # closes the second window: written, chained
    records = world.windows.events()
    assert len(records) == 3, "the agent kept running and wrote the next window"
    assert chained([r for r in records if r.event_id != other_size.event_id])


@pytest.mark.parametrize("key", ["tenant", "other"])
def test_a_first_link_written_into_a_partition_read_before_the_tenants_steers_nothing(key: str) -> None:
    """A forged first link of a live chain (sequence 1, hashed right: the chain has no secret), in
    a partition read back before the tenant's (or keyed by another key in it), became the chain's
    head on recovery: every genuine record of the chain was ignored and its windows written again."""
    world = World()
    world.handle(world.send(at(1, 1), at(CLOSER, 2)))  # one window written
    (genuine,) = world.windows.events()
    home = next(p for p, log in world.windows.partitions.items() if log)
    early = dataclasses.replace(
        genuine,
        event_id="ffffffff-ffff-4fff-bfff-ffffffffffff",
        payload=dataclasses.replace(
            genuine.payload, window_start=START - 3600 * SECOND, window_end=START - 3540 * SECOND
        ),
    )
    forged = link_event(early, None)
    elsewhere = 0 if home != 0 else 1
    others = {p: log for p, log in world.windows.partitions.items() if p != elsewhere}
    world.windows.partitions = {elsewhere: [], **others}  # the forged record's partition is read first
    stray_key = (
        b"acme"
        if key == "tenant"
        else next(k for k in (f"k{i}".encode() for i in range(100)) if world.windows.placed(k, elsewhere))
    )
    world.windows.partitions[elsewhere].append(
        Record("usage.windows", elsewhere, 0, stray_key, codec.encode(forged))
    )
    world.agent = world.new_agent()  # a restart reads the log back
    world.handle(world.send(at(CLOSER + 60, 3)))  # closes the second window: written, chained
    ours = world.windows.partitions[home]
    assert len(ours) == 2, "the genuine window not written again; the next one written"
    assert chained([codec.decode(r.value or b"") for r in ours])


def test_an_old_delta_stands_for_one_turn_of_its_microsecond_not_every_one() -> None:
    """Before the upgrade two late turns in one microsecond were written as one delta (the first;
    the second's tokens were lost under the same id). The re-fold after the upgrade takes the old
    delta for the first turn only, and writes the second at last: in the window's totals (the
    re-fold forgets no window, so it makes no delta), a correction."""
    world = World()
    world.handle(world.send(at(1, 1), at(PAST_RETENTION, 2)))
    world.handle(world.send(at(5, 3, tokens=4), at(5, 4, tokens=7)))
    (log,) = [log for log in world.windows.partitions.values() if log]
    heads: dict[str, ChainHead] = {}
    kept = []
    for raw in log:  # as the old code left it: the first delta under its old id, the second lost
        event = codec.decode(raw.value or b"")
        legacy = legacy_late_id(event)
        if legacy is not None and legacy in {codec.decode(r.value or b"").event_id for r in kept}:
            continue
        key = chain_key(event)
        relinked = link_event(dataclasses.replace(event, event_id=legacy or event.event_id), heads.get(key))
        heads[key] = ChainHead(key, relinked.sequence or 0, relinked.hash or "")
        kept.append(dataclasses.replace(raw, offset=len(kept), value=codec.encode(relinked)))
    log[:] = kept
    assert sorted(tokens for _, tokens in late_deltas(world)) == [4]
    world.agent = world.new_agent()
    world.handle(world.send(at(PAST_RETENTION + 1, 5)))
    assert charged(world)[("acme", START)] == 3 + 4 + 7, "the lost turn written once"
    assert sorted(tokens for _, tokens in late_deltas(world)) == [4]
    written = len(world.windows.events())
    world.agent = world.new_agent()  # and a second replay writes nothing more
    world.handle(world.send(at(PAST_RETENTION + 2, 6)))
    assert len(world.windows.events()) == written


def charged(world: World) -> dict[tuple[str, int], int]:
    """Tokens per (tenant, window start) as a reader sums ``usage.windows``: the latest revision of each
    (window, source partition) plus every ``LateUsage`` delta."""
    latest: dict[tuple[str, int, str], tuple[int, int]] = {}
    deltas: dict[tuple[str, int], int] = {}
    for record in world.windows.events():
        p = record.payload
        assert isinstance(p, UsageWindow)
        if p.revision < 0:
            key = (record.tenant, p.window_start)
            deltas[key] = deltas.get(key, 0) + p.tokens
            continue
        known = latest.get((record.tenant, p.window_start, record.producer))
        if known is None or known[0] < p.revision:
            latest[(record.tenant, p.window_start, record.producer)] = (p.revision, p.tokens)
    sums = dict(deltas)
    for (tenant, start, _), (_, tokens) in latest.items():
        sums[(tenant, start)] = sums.get((tenant, start), 0) + tokens
    return sums


def restart_with_lateness(world: World, seconds: int) -> None:
    ports = Ports(world.inputs, world.windows, world.letters)
    config = dataclasses.replace(CONFIG, lateness_micros=seconds * SECOND)
    world.agent = UsageAgent(SETTINGS, ports, config, clock=lambda: world.now)


def test_a_delta_written_under_a_smaller_lateness_is_not_counted_again_by_a_larger_one() -> None:
    """Lateness 10 s: the late turn (4 tokens) came when its window was past retention, a delta. The
    worker restarted with 100 s: the re-fold's watermark was lower, the window still remembered, and
    the same turn became a correction with the window's full totals (10 + 4) — beside the delta,
    18 tokens charged for 14."""
    world = World()
    world.handle(world.send(at(1, 1, tokens=10), at(PAST_RETENTION, 2, tokens=0)))
    world.handle(world.send(at(5, 3, tokens=4)))
    assert charged(world)[("acme", START)] == 14 and [t for _, t in late_deltas(world)] == [4]
    restart_with_lateness(world, 100)
    world.handle(world.send(at(PAST_RETENTION + 1, 4, tokens=0)))
    assert charged(world)[("acme", START)] == 14


def test_a_correction_written_under_a_larger_lateness_is_not_counted_again_by_a_smaller_one() -> None:
    """Lateness 10 s: the late turn (4 tokens) came while its window was remembered, a correction
    (10 + 4). The worker restarted with 0 s: the re-fold's watermark was higher, the window already
    forgotten, and the same turn became a delta beside the correction that counts it."""
    world = World()
    remembered = (CONFIG.retention_micros + 60 * SECOND) // SECOND + 5  # 5 s short of forgetting
    world.handle(world.send(at(1, 1, tokens=10), at(remembered, 2, tokens=0)))
    world.handle(world.send(at(5, 3, tokens=4)))
    assert charged(world)[("acme", START)] == 14 and late_deltas(world) == []
    restart_with_lateness(world, 0)
    world.handle(world.send(at(remembered + 1, 4, tokens=0)))
    assert charged(world)[("acme", START)] == 14


def test_a_delta_the_wall_clock_made_is_not_counted_again_after_a_restart() -> None:
    """Same lateness throughout: the partition was idle past the window's retention, so the wall
    clock forgot the window and the late turn was a delta; the re-fold replays event time only, had
    the window open, and its reconcile wrote a correction with that turn's tokens in it too."""
    world = World()
    world.handle(world.send(at(1, 1, tokens=10)))
    world.now = END + CONFIG.retention_micros + CONFIG.lateness_micros + SECOND
    asyncio.run(world.agent.tick())
    world.handle(world.send(at(5, 2, tokens=4)))
    assert charged(world)[("acme", START)] == 14 and [t for _, t in late_deltas(world)] == [4]
    world.agent = world.new_agent()
    world.handle(world.send(at(6, 3, tokens=0)))
    assert charged(world)[("acme", START)] == 14


LATENESS_S = st.sampled_from([0, 10, 100, 1000, 4000])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("turn"), st.integers(0, 7500), st.integers(0, 50)),
        st.tuples(st.just("tick"), st.integers(0, 9000), st.just(0)),
        st.tuples(st.just("restart"), LATENESS_S, st.just(0)),
        st.tuples(st.just("crash"), st.integers(0, 7500), st.integers(0, 50)),
    ),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(LATENESS_S, OPS)
def test_whatever_lateness_each_restart_runs_with_every_turn_is_charged_once(first: int, ops: list) -> None:
    """Turns (at 0 to 7500 s into the history, some past a window's retention), ticks of the wall
    clock, restarts each with any lateness, and turns whose records a failed write lost: at the end,
    once every window closed, a reader's sum per window (latest revision + deltas) is the sum of its
    turns."""
    world = World()
    restart_with_lateness(world, first)
    expected: dict[tuple[str, int], int] = {}
    sent = 0
    for kind, value, tokens in ops:
        if kind in ("turn", "crash"):
            sent += 1
            event = at(value, sent, tokens=tokens)
            start, _ = window_bounds(CONFIG, event.occurred_at)
            expected[("acme", start)] = expected.get(("acme", start), 0) + tokens
            if kind == "turn":
                world.handle(world.send(event))
                continue
            world.windows.fail_writes = True  # in the input log, whatever it made lost
            with contextlib.suppress(InfrastructureError):
                world.handle(world.send(event))
            world.windows.fail_writes = False
            world.agent.revoke({0})  # what handle_until_done does before retrying
        elif kind == "tick":
            world.now = max(world.now, START + value * SECOND)
            asyncio.run(world.agent.tick())
        else:
            restart_with_lateness(world, value)
            sent += 1  # the restart's first batch: a turn of no tokens, re-folding what came before
            world.handle(world.send(at(0, sent, tokens=0)))
    world.handle(world.send(at(0, sent + 1, tokens=0)))  # after a failed write: the retry's re-fold
    world.now = START + 10**6 * SECOND  # every window closes
    asyncio.run(world.agent.tick())
    assert {k: v for k, v in charged(world).items() if v} == {k: v for k, v in expected.items() if v}
    assert chained(world.windows.events(), key=chain_key)


def test_a_restart_whose_group_lost_its_offsets_counts_no_turn_twice() -> None:
    """The consumer group's committed offsets were lost while the worker was stopped (the group
    deleted, its offsets expired): the restarted agent is handed the partition from offset 0 again.
    Before, it re-folded below that first delivery (nothing) and then folded every old turn as a new
    one: each came back as a ``LateUsage`` delta, every window's usage charged twice. The re-fold now
    reads the partition to its end and the redelivered turns it counted are not counted again."""
    world = World()
    delivered = world.send(at(1, 1), at(2, 2, tokens=4), at(CLOSER, 3), at(CLOSER + 1, 4, tokens=5))
    world.handle(delivered)
    before = charged(world)
    assert before[("acme", START)] == 3 + 4
    world.agent = world.new_agent()  # restarted: the group starts it at the partition's first offset
    world.handle(delivered + world.send(at(CLOSER + 2, 5, tokens=6)))
    world.handle(world.send(at(2 * CLOSER + 60, 6)))  # closes the second window
    after = charged(world)
    assert after[("acme", START)] == 3 + 4, "the first window is charged once"
    assert after[("acme", START + 60 * SECOND)] == 3 + 5 + 6, "and the second one too"
    assert chained(world.windows.events())


def test_a_worker_that_lost_a_partition_stops_exporting_its_window_lag() -> None:
    """``ledgerflow_usage_window_lag_seconds{partition}`` is the owner's: a series left behind by a
    worker that lost the partition stays at its last value and grows no more, while the
    partition's watermark moves on elsewhere (and both workers export the same partition)."""
    world = World()
    world.handle(world.send(at(1, 1), partition=7))
    asyncio.run(world.agent.tick())
    lag = WORKER_REGISTRY.get_sample_value("ledgerflow_usage_window_lag_seconds", {"partition": "7"})
    assert lag is not None
    world.agent.revoke({7})  # a rebalance gave input partition 7 to another worker
    assert WORKER_REGISTRY.get_sample_value("ledgerflow_usage_window_lag_seconds", {"partition": "7"}) is None


@pytest.mark.parametrize("how", ["restart", "rebalance"])
def test_a_window_open_at_a_restart_closes_by_the_clock_without_a_new_turn(how: str) -> None:
    """After a restart or a rebalance the agent held no partition in memory until a turn arrived,
    and the tick did nothing (``usage.windows`` not loaded): a window still open then was never
    written while its partition stayed quiet. The tick recovers every owned partition from its
    log, so the window closes by the wall clock as an idle partition's does; a later batch counts
    no turn twice."""
    world = World()
    world.handle(world.send(at(1, 1), at(2, 2, tokens=4)))
    if how == "restart":
        world.agent = world.new_agent()
    else:
        world.agent.revoke({0})
    world.now = END + CONFIG.lateness_micros
    asyncio.run(world.agent.tick({0}))
    assert world.totals() == [("acme", START, 7, 2, False)]
    world.handle(world.send(at(CLOSER * 2, 3)))  # the partition's next turn, far later
    world.now += 200 * SECOND
    asyncio.run(world.agent.tick({0}))
    assert [t for t in world.totals() if t[1] == START] == [("acme", START, 7, 2, False)]
    assert chained(world.windows.events(), key=chain_key)
