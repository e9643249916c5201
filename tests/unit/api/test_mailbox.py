"""A subscriber's mailbox hands a live write at most a byte budget of frames (``Mailbox.take``):
the frames are shared by every subscriber of a record, the write a stream joins of them is not."""

from __future__ import annotations

from ledgerflow.api.hub import Frame, Mailbox
from ledgerflow.api.streams import MAX_BYTES_PER_WRITE, MAX_FRAMES_PER_WRITE


def _frame(offset: int, size: int) -> Frame:
    return Frame(("e", 0), offset, "acme", "c1", "MessageSubmitted", b"x" * size)


def _box(sizes: list[int]) -> Mailbox:
    box = Mailbox(capacity=1000)
    for offset, size in enumerate(sizes):
        assert box.offer(_frame(offset, size))
    return box


def test_a_write_stops_at_the_byte_budget_but_takes_at_least_one_frame() -> None:
    box = _box([100, 100, 100, 1000, 50])
    assert [f.offset for f in box.take(10, 250)] == [0, 1]
    assert [f.offset for f in box.take(10, 250)] == [2]  # 100 + 1000 is over: the next write
    assert [f.offset for f in box.take(10, 250)] == [3]  # alone over the budget: taken alone
    assert [f.offset for f in box.take(10, 250)] == [4]
    assert box.take(10, 250) == [] and box.qsize() == 0


def test_without_a_budget_or_under_it_the_frame_limit_decides() -> None:
    assert [f.offset for f in _box([10] * 5).take(3)] == [0, 1, 2]
    assert [f.offset for f in _box([10] * 5).take(3, 10_000)] == [0, 1, 2]


def test_a_live_write_of_large_turns_stays_near_the_budget() -> None:
    """256 turns of about 130 KB each: the old write joined all of them (33 MB) for each subscriber."""
    box = _box([130_000] * 256)
    taken = box.take(MAX_FRAMES_PER_WRITE, MAX_BYTES_PER_WRITE)
    assert sum(len(f.data) for f in taken) <= MAX_BYTES_PER_WRITE
    assert len(taken) == 2 and box.qsize() == 254
