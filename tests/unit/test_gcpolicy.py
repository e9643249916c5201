"""The collector's thresholds in ledgerflow's processes (ledgerflow/gcpolicy.py)."""

from __future__ import annotations

import gc
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
    assert not [o for o in gc.get_objects() if type(o).__name__ == "Node"]
