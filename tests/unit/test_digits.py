"""ascii_digits: the one check for a decimal number read from outside."""

from __future__ import annotations

import pytest

from ledgerflow.digits import MAX_DIGITS, ascii_digits


@pytest.mark.parametrize("text", ["0", "7", "007", "65535", "9" * 19, "1" * MAX_DIGITS])
def test_plain_ascii_digits_pass_and_convert(text: str) -> None:
    assert ascii_digits(text)
    assert int(text) >= 0


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "²",  # superscript two: str.isdigit() says yes, int() refuses it
        "1²",
        "٣",  # Arabic-Indic three: isdigit() and int() both take it
        "１",  # fullwidth one
        " 1",
        "1 ",
        "\t1\n",
        "+1",
        "-1",
        "1_0",  # int() takes underscores
        "1.0",
        "1e3",
        "0x10",
        "½",
        "1\x00",
        "1" * (MAX_DIGITS + 1),  # int() would raise: past the default digit limit
        "9" * 100_000,
    ],
)
def test_anything_else_is_refused(text: str) -> None:
    assert not ascii_digits(text)


def test_max_digits_bounds_the_length() -> None:
    assert ascii_digits("123456789", max_digits=9)
    assert not ascii_digits("1234567890", max_digits=9)
    assert not ascii_digits("1", max_digits=0)
