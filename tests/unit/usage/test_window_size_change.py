"""``size_problem``: the usage agent refuses a window size other than the one ``usage.windows`` was
written with, naming both; the same size, or nothing written yet, runs."""

from __future__ import annotations

import pytest

from ledgerflow.usage.settings import WINDOW_ENV, size_problem

S = 1_000_000


@pytest.mark.parametrize("written", [set(), {60 * S}])
def test_the_same_size_or_nothing_written_runs(written: set[int]) -> None:
    assert size_problem(60 * S, written) is None


def test_another_size_is_refused_in_one_line_naming_both_and_the_ways_out() -> None:
    problem = size_problem(30 * S, {60 * S})
    assert problem is not None and "\n" not in problem
    assert problem.startswith(f"usage: {WINDOW_ENV} is 30 s but usage.windows holds windows of 60 s")
    assert "set it back to 60," in problem and "ledgerflow projections rebuild" in problem


def test_a_history_of_several_sizes_is_refused_also_when_one_of_them_is_configured() -> None:
    """Windows of two sizes already (written by a version that let the size change): the read
    model has counted history twice; running on would hide it."""
    problem = size_problem(60 * S, {60 * S, 30 * S, 86_400 * S})
    assert problem is not None
    assert "holds windows of 30, 86400 s" in problem and "set it back" not in problem, (
        "no single size agrees with a history of several: naming one would send the operator in circles"
    )
    assert "no size agrees with all of them" in problem
    two = size_problem(30 * S, {60 * S, 30 * S})  # set to the other one: the same answer, no loop
    assert two is not None and "set it back" not in two


@pytest.mark.parametrize(
    ("configured", "written", "named"),
    [
        (1_000, 1_001, ("0.001 s", "0.001001 s")),
        (1_500_000, 1_000_000, ("1.5 s", "1 s")),
        (1, 2, ("0.000001", "0.000002")),
    ],
)
def test_sub_second_sizes_are_named_exactly(configured: int, written: int, named: tuple[str, str]) -> None:
    problem = size_problem(configured, {written})
    assert problem is not None
    assert all(n in problem for n in named), problem
