"""``quoted``: a client's value in a refusal, one short line, whatever it is (pure)."""

from __future__ import annotations

import pytest

from ledgerflow.quoting import quoted


def _deep(levels: int) -> list[object]:
    value: list[object] = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("acme", "'acme'"),
        ("a\nb", "'a\\nb'"),
        ("x" * 40, repr("x" * 40)),
        ("x" * 41, repr("x" * 37 + "...")),
        (None, "None"),
        (True, "True"),
        (1.5, "1.5"),
        (2**63, str(2**63)),
        (2**70, "an integer of 71 bits"),
        ([], "a JSON array of 0 items"),
        ([1], "a JSON array of 1 item"),
        ({"a": 1, "b": 2}, "a JSON object of 2 members"),
        (object(), "a value of type object"),
    ],
)
def test_values_are_quoted_briefly(value: object, shown: str) -> None:
    assert quoted(value) == shown


def test_a_value_nested_past_the_recursion_limit_is_named_not_rendered() -> None:
    deep = _deep(5000)
    with pytest.raises(RecursionError):
        repr(deep)  # what the refusals did before
    assert quoted(deep) == "a JSON array of 1 item"
    assert quoted({"a": deep}) == "a JSON object of 1 member"


def test_a_long_string_is_cut_to_the_limit() -> None:
    shown = quoted("y" * 100_000, 60)
    assert shown == repr("y" * 57 + "...") and len(shown) == 62
