"""How a refusal quotes a value a client sent: one short line, whatever the value.

A JSON body the edge accepts nests up to 1024 levels (orjson's limit) and holds strings of up to
its 256 KiB, so neither ``repr(value)`` (past Python's recursion limit it raises
``RecursionError``: a 500 instead of the refusal) nor ``f"{value!r}"`` of a long string (a refusal
as large as the body) may quote it. ``quoted`` never looks inside a list or an object.
"""

from __future__ import annotations

__all__ = ["QUOTE_CHARS", "quoted"]

QUOTE_CHARS = 40
"""Characters of a client's string a refusal quotes at most (longer ones end in ``...``)."""


def quoted(value: object, limit: int = QUOTE_CHARS) -> str:
    """``value`` for a one-line message: a string as its ``repr``, cut to ``limit`` characters;
    a number, boolean or null as its ``repr``; a list or object only as what it is (``a JSON
    array of 3 items``), never its contents."""
    if isinstance(value, str):
        return repr(value) if len(value) <= limit else repr(value[: max(limit - 3, 0)] + "...")
    if value is None or isinstance(value, bool | float):
        return repr(value)
    if isinstance(value, int):
        return repr(value) if value.bit_length() <= 64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, list | tuple):
        return f"a JSON array of {len(value)} item{'' if len(value) == 1 else 's'}"
    if isinstance(value, dict):
        return f"a JSON object of {len(value)} member{'' if len(value) == 1 else 's'}"
    return f"a value of type {type(value).__name__}"
