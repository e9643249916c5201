"""The collector's thresholds in ledgerflow's processes (ledgerflow/gcpolicy.py)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from ledgerflow import gcpolicy


@pytest.fixture
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's defaults, whatever ran before
    yield gc.get_threshold()
    gc.set_threshold(*before)


def test_tune_raises_the_young_threshold_and_keeps_the_older_ratios(thresholds: tuple[int, int, int]) -> None:
    gcpolicy.tune()
    assert gc.get_threshold() == (gcpolicy.YOUNG, thresholds[1], thresholds[2])
    assert thresholds[0] < gcpolicy.YOUNG


def test_the_collector_still_collects_cycles(thresholds: tuple[int, int, int]) -> None:
    """A cycle built on the hot path is freed by the tuned collector, not leaked."""
    gcpolicy.tune()

    class Node:
        other: object = None

    gc.collect()
    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    kept: list[list[int]] = [
        [] for _ in range(gcpolicy.YOUNG * 2)
    ]  # net allocations enough for a young collection
    assert len(kept) == gcpolicy.YOUNG * 2
    # This class only: the process may hold other libraries' "Node"s (mode's service graph of a
    # faust App that an earlier test in the same run built: a CI run failed on those).
    assert not [o for o in gc.get_objects() if type(o) is Node]


class Node:
    other: object = None


def cycle() -> weakref.ref[Node]:
    """A two-node reference cycle nothing else points to, and a weak reference to one node."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.collect()


def test_settle_freezes_what_survives_out_of_the_next_collections(unfrozen: None) -> None:
    kept = Node()
    frozen = gcpolicy.settle()
    assert frozen == gc.get_freeze_count() > 0
    assert not any(o is kept for o in gc.get_objects())  # a full collection no longer scans it
    born_after = Node()
    assert any(o is born_after for o in gc.get_objects())


def test_settle_collects_garbage_before_freezing_it(unfrozen: None) -> None:
    """Cyclic garbage alive at a settle is freed, not frozen for good."""
    dead = cycle()
    gcpolicy.settle()
    assert dead() is None


def test_what_a_settle_froze_and_then_died_in_a_cycle_is_freed_by_the_next_one(unfrozen: None) -> None:
    """Memory stays bounded over many rebalances: frozen objects are not kept forever."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    ref = weakref.ref(a)
    gcpolicy.settle()
    del a, b  # now cyclic garbage, but frozen: an ordinary collection does not see it
    gc.collect()
    assert ref() is not None
    gcpolicy.settle()
    assert ref() is None


def test_the_pause_timer_reports_each_collection_once_with_its_generation() -> None:
    ticks = iter([10.0, 10.25, 11.0, 11.5])
    seen: list[tuple[int, float]] = []
    timer = gcpolicy.PauseTimer(lambda generation, s: seen.append((generation, s)), clock=lambda: next(ticks))
    timer("start", {"generation": 2})
    timer("stop", {"generation": 2, "collected": 3, "uncollectable": 0})
    timer("start", {"generation": 0})
    timer("stop", {"generation": 0, "collected": 0, "uncollectable": 0})
    assert seen == [(2, 0.25), (0, 0.5)]


def test_a_timer_installed_during_a_collection_skips_the_stop_it_did_not_see_start() -> None:
    seen: list[tuple[int, float]] = []
    timer = gcpolicy.PauseTimer(lambda generation, s: seen.append((generation, s)), clock=lambda: 1.0)
    timer("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    timer("stop", {"generation": 1, "collected": 0, "uncollectable": 0})
    assert seen == []


def test_time_pauses_times_the_process_collections_until_removed() -> None:
    seen: list[tuple[int, float]] = []
    timer = gcpolicy.time_pauses(lambda generation, s: seen.append((generation, s)))
    try:
        gc.collect()
        gc.collect(0)
    finally:
        gc.callbacks.remove(timer)
    gc.collect()
    assert [generation for generation, _ in seen] == [2, 0]
    assert all(s >= 0 for _, s in seen)
