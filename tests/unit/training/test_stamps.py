"""``versioned.stamp``: a tenant's outcomes are stamped in order whatever the owners' clocks do."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.versioned import MAX_STAMP_AHEAD_MICROS, stamp

T = 1_780_000_000_000_000


def test_the_wall_clock_when_it_is_ahead_of_the_last_stamp() -> None:
    assert stamp(T, None) == T
    assert stamp(T, T - 1) == T


def test_one_microsecond_after_the_last_stamp_when_the_clock_is_not_ahead() -> None:
    assert stamp(T, T) == T + 1
    assert stamp(T - 3_600_000_000, T) == T + 1
    assert stamp(T - MAX_STAMP_AHEAD_MICROS, T) == T + 1  # a day of clock skew is followed


@settings(deadline=None)  # a loaded CI machine is no finding
@given(st.lists(st.integers(min_value=-(2**62), max_value=2**62), min_size=1, max_size=50))
def test_any_sequence_of_clock_readings_gives_rising_stamps_never_behind_the_clock(
    clocks: list[int],
) -> None:
    last: int | None = None
    for now in clocks:
        next_ = stamp(now, last)
        assert next_ >= now
        if last is not None and last - now <= MAX_STAMP_AHEAD_MICROS:
            assert next_ > last
            assert next_ in (now, last + 1)
        else:
            assert next_ == now
        last = next_


def test_a_last_stamp_further_ahead_than_any_clock_skew_is_not_followed() -> None:
    """A record written from outside, stamped in 2199: following it would stamp every later
    outcome there, a lock's deadline included (a lock that never ends by the clock)."""
    assert stamp(T, T + MAX_STAMP_AHEAD_MICROS) == T + MAX_STAMP_AHEAD_MICROS + 1
    assert stamp(T, T + MAX_STAMP_AHEAD_MICROS + 1) == T
    assert stamp(T, 7_258_118_400_000_000) == T  # 2200-01-01
    assert stamp(0, T) == 0  # a clock that reads 1970 is no skew either
