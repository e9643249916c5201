"""A record on an agent's output log whose ``lf-input`` header is not an offset (written there by
something other than the agent) is read as one without it: recovery goes on instead of failing
on ``int()`` at every retry and leaving the partition stuck."""

from __future__ import annotations

import pytest

from ledgerflow.topics import input_offset_of


def test_a_decimal_header_is_theinput_offset_of() -> None:
    assert input_offset_of([("traceparent", b"00-ab"), ("lf-input", b"1234")]) == 1234
    assert input_offset_of([("traceparent", b"00-ab")]) is None
    assert input_offset_of(None) is None


@pytest.mark.parametrize("value", [b"x", b"", b"-1", b"1e3", b"\xd9\xa1", b"9" * 40, None])
def test_a_header_that_is_not_an_offset_is_ignored(value: bytes | None) -> None:
    assert input_offset_of([("lf-input", value)]) is None
