"""``retry``: the capped exponential waits every retry loop of ledgerflow takes."""

from __future__ import annotations

from itertools import islice

import pytest

from ledgerflow.retry import delay, delays


def test_delays_double_from_the_first_and_stop_at_the_cap() -> None:
    assert [delay(n, first=0.1, cap=1.0) for n in range(1, 7)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert [delay(n, first=1.0, cap=30.0) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_no_overflow_however_long_the_outage() -> None:
    assert delay(10_000, first=0.1, cap=5.0) == 5.0
    assert delay(10**12, first=1.0, cap=30.0) == 30.0  # 2.0 ** (10**12) would raise OverflowError


def test_an_attempt_below_one_waits_the_first_delay() -> None:
    assert delay(0, first=1.0, cap=30.0) == 1.0
    assert delay(-7, first=0.25, cap=5.0) == 0.25


def test_a_first_delay_above_the_cap_waits_the_cap_and_zero_waits_nothing() -> None:
    assert delay(1, first=10.0, cap=5.0) == 5.0
    assert delay(5, first=0.0, cap=0.0) == 0.0


@pytest.mark.parametrize("jitter", [0.0, 0.1, 0.5, 0.999])
@pytest.mark.parametrize("attempt", [1, 3, 6, 40])
def test_jitter_stretches_a_delay_by_at_most_its_fraction_and_never_past_the_cap(
    attempt: int, jitter: float
) -> None:
    plain = delay(attempt, first=0.1, cap=5.0)
    stretched = delay(attempt, first=0.1, cap=5.0, jitter=jitter)
    assert plain <= stretched <= min(5.0, plain * (1 + jitter))


def test_jitter_is_exact_below_the_cap() -> None:
    assert delay(1, first=0.1, cap=5.0, jitter=0.5) == pytest.approx(0.15)
    assert delay(30, first=0.1, cap=5.0, jitter=0.9) == 5.0


@pytest.mark.parametrize("jitter", [-0.1, 1.0, 3.0, float("nan")])
def test_jitter_outside_a_fraction_is_refused(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter must be a fraction in \\[0, 1\\)"):
        delay(1, first=0.1, cap=5.0, jitter=jitter)


def test_the_iterator_yields_the_delays_in_order_without_end() -> None:
    assert list(islice(delays(0.25, 5.0), 8)) == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert list(islice(delays(0.2, 5.0), 1000))[-1] == 5.0
    assert list(islice(delays(0.2, 5.0), 6)) == [delay(n, 0.2, 5.0) for n in range(1, 7)]
