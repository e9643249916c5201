"""``versioned.stamp``: a tenant's outcomes are stamped in order whatever the owners' clocks do."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ledgerflow.versioned import stamp

T = 1_780_000_000_000_000


def test_the_wall_clock_when_it_is_ahead_of_the_last_stamp() -> None:
    assert stamp(T, None) == T
    assert stamp(T, T - 1) == T


def test_one_microsecond_after_the_last_stamp_when_the_clock_is_not_ahead() -> None:
    assert stamp(T, T) == T + 1
    assert stamp(T - 3_600_000_000, T) == T + 1
    assert stamp(0, T) == T + 1
    assert stamp(-(2**63), T) == T + 1


@given(st.lists(st.integers(min_value=-(2**62), max_value=2**62), min_size=1, max_size=50))
def test_any_sequence_of_clock_readings_gives_strictly_rising_stamps_never_behind_the_clock(
    clocks: list[int],
) -> None:
    last: int | None = None
    for now in clocks:
        next_ = stamp(now, last)
        assert next_ >= now
        assert last is None or next_ > last
        assert last is None or next_ == now or next_ == last + 1
        last = next_
