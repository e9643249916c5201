"""The orjson fast path of canonical_json writes exactly RFC 8785 (rfc8785) bytes."""

from __future__ import annotations

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.contracts.canonical import canonical_json as _jcs

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400)
@given(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
def test_fast_canonical_bytes_equal_the_reference_implementation(body: dict) -> None:
    assert _jcs(body) == rfc8785.dumps(body)


def test_integral_and_exponent_floats_match_the_reference() -> None:
    for value in (2.0, -0.0, 1e20, 1e-7, 0.5, 123456.789, 1e15, 9007199254740993.0):
        assert _jcs({"x": value}) == rfc8785.dumps({"x": value}), value
