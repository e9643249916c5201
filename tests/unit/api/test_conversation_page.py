"""One page of a conversation's turns (``GET /v1/conversations/{id}``): its positions and its size."""

from __future__ import annotations

import pytest

from ledgerflow.api.conversations import newest_that_fit, turn_range
from ledgerflow.api.paging import parse_limit, parse_position
from ledgerflow.errors import ValidationError


@pytest.mark.parametrize(
    ("length", "before", "limit", "expected"),
    [
        (2000, None, 200, (1800, 2000)),  # the newest turns by default, never the whole list
        (50, None, 200, (0, 50)),
        (2000, 1800, 200, (1600, 1800)),  # the page of older turns
        (2000, 150, 200, (0, 150)),
        (2000, 5000, 200, (1800, 2000)),  # past the end: the newest
        (2000, 0, 200, (0, 0)),
        (0, None, 200, (0, 0)),
    ],
)
def test_the_page_is_the_limit_turns_before_the_position(
    length: int, before: int | None, limit: int, expected: tuple[int, int]
) -> None:
    assert turn_range(length, before, limit) == expected


def test_a_page_keeps_the_newest_turns_that_fit_and_always_one() -> None:
    assert newest_that_fit([10, 10, 10], 100, at_least_one=True) == 3
    assert newest_that_fit([10, 10, 10], 25, at_least_one=True) == 2
    assert newest_that_fit([10, 30, 10], 25, at_least_one=True) == 1  # stops at the first that does not fit
    assert newest_that_fit([10, 50], 25, at_least_one=True) == 1  # one turn even over the budget
    assert newest_that_fit([10, 50], 25, at_least_one=False) == 0


@pytest.mark.parametrize("raw", ["-1", "1_0", "٣", " 3", "+3", "", "x", "1" * 19])
def test_a_position_is_plain_ascii_digits(raw: str) -> None:
    with pytest.raises(ValidationError, match="turns_before"):
        parse_position(raw, name="turns_before")


def test_a_position_parses_or_is_absent() -> None:
    assert parse_position(None, name="turns_before") is None
    assert parse_position("0", name="turns_before") == 0
    assert parse_position("1800", name="turns_before") == 1800


def test_a_limit_error_names_its_parameter() -> None:
    with pytest.raises(ValidationError, match="^turns_limit: must be between 1 and 1000"):
        parse_limit("1001", default=200, maximum=1000, name="turns_limit")
