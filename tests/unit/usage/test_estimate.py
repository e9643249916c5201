from __future__ import annotations

import pytest

from ledgerflow.errors import ValidationError
from ledgerflow.usage.estimate import estimate_tokens, estimate_tokens_from_len


@pytest.mark.parametrize(
    ("content", "tokens"),
    [("", 1), ("a", 1), ("abcd", 1), ("abcde", 2), ("hello world!", 3), ("é" * 4, 2), ("😀", 1), ("😀😀", 2)],
)
def test_estimate_is_a_quarter_of_the_utf8_bytes_rounded_up_and_at_least_one(
    content: str, tokens: int
) -> None:
    assert estimate_tokens(content) == tokens
    assert estimate_tokens_from_len(len(content.encode("utf-8"))) == tokens


def test_negative_length_is_refused() -> None:
    with pytest.raises(ValidationError, match=">= 0 bytes"):
        estimate_tokens_from_len(-1)
