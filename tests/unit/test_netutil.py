"""The pure choice of a free port (``ledgerflow.netutil``): below the kernel's ephemeral range, so
a client retrying a stopped broker cannot connect to itself on the broker's port and leave a
TIME-WAIT that keeps the broker from binding it again."""

from __future__ import annotations

import random

import pytest

from ledgerflow.netutil import (
    DEFAULT_EPHEMERAL,
    FLOOR,
    choose_port,
    ephemeral_range,
    port_pool,
    run_starts,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("32768\t60999\n", (32768, 60999)),
        ("49152 65535", (49152, 65535)),
        (None, DEFAULT_EPHEMERAL),  # no /proc (macOS)
        ("", DEFAULT_EPHEMERAL),
        ("32768", DEFAULT_EPHEMERAL),
        ("a b", DEFAULT_EPHEMERAL),
        ("60999 32768", DEFAULT_EPHEMERAL),  # low above high
        ("0 70000", DEFAULT_EPHEMERAL),
    ],
)
def test_ephemeral_range_reads_proc_or_falls_back(text: str | None, expected: tuple[int, int]) -> None:
    assert ephemeral_range(text) == expected


def test_the_pool_is_the_larger_stretch_outside_the_ephemeral_range() -> None:
    assert port_pool((32768, 60999)) == (FLOOR, 32767)  # Linux's default: below it
    assert port_pool(DEFAULT_EPHEMERAL) == (FLOOR, 32767)  # no /proc: below Linux's and IANA's
    assert port_pool((49152, 65535)) == (FLOOR, 49151)
    assert port_pool((1024, 20000)) == (20001, 65535)  # a low range: above it
    assert port_pool((1024, 65000)) == (FLOOR, 65535)  # almost everything ephemeral: nothing better
    assert port_pool((10500, 65535)) == (FLOOR, 65535)  # 500 ports below: too few to draw from


def test_a_run_and_its_bus_ports_stay_in_the_pool_when_they_fit() -> None:
    pool = (FLOOR, 32767)
    assert run_starts(pool, 1) == (FLOOR, 32767)
    assert run_starts(pool, 2) == (FLOOR, 32766)  # Kafka and its controller
    assert run_starts(pool, 6, highest=55535, also=10_000) == (FLOOR, 22762)  # Redis Cluster + bus
    assert run_starts(pool, 6, highest=20_000) == (FLOOR, 19995)
    assert run_starts((FLOOR, 15000), 6, also=10_000) == (FLOOR, 14995)  # bus ports cannot fit: run only
    assert run_starts((40000, 65535), 6, highest=30000) == (FLOOR, 29995)  # pool above highest


def test_choose_port_draws_until_a_whole_run_is_usable() -> None:
    asked: list[list[int]] = []

    def usable(ports: list[int]) -> bool:
        asked.append(ports)
        return 20_001 not in ports  # e.g. taken, or claimed by another test process

    draws = iter([20_000, 20_001, 20_002])
    port = choose_port((FLOOR, 32766), 2, 0, lambda _lo, _hi: next(draws), usable)
    assert port == 20_002
    assert asked == [[20_000, 20_001], [20_001, 20_002], [20_002, 20_003]]
    with_bus = choose_port((FLOOR, 22762), 2, 10_000, lambda _lo, _hi: 12_000, lambda _p: True)
    assert with_bus == 12_000
    assert choose_port((FLOOR, 32767), 1, 0, lambda _lo, _hi: 15_000, lambda _p: False, attempts=3) is None


def test_drawn_ports_never_enter_the_ephemeral_range() -> None:
    rng = random.Random(7)
    pool = port_pool(ephemeral_range("32768\t60999"))
    for count, also in ((1, 0), (2, 0), (6, 10_000)):
        starts = run_starts(pool, count, 55_535 if also else 65_535, also)
        for _ in range(2000):
            port = choose_port(starts, count, also, rng.randint, lambda _p: True)
            assert port is not None
            assert port >= FLOOR and port + count - 1 + also < 32768
