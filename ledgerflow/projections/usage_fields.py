"""The fields of the usage read model (``Keys.usage`` and ``Keys.usage_turns``): one per model,
window and source, ``<model>|<window_start>|<window_end>|<producer>``. Pure.

Neither the model nor the producer is an id: the edge refuses a ``|`` in a model name, but a
record written to Kafka directly may carry one in either. A reader therefore takes the field
apart from the right first (the usage agent's producer, ``ledgerflow-usage/p<n>``, holds no
``|``), then from the left, and skips a field that neither way reads (``None``), so one odd
record never fails the whole read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ledgerflow.digits import ascii_digits
from ledgerflow.redisvalues import Reply, text

SEPARATOR = "|"
LATE_SOURCE = "+late"
"""Appended to the producer in the field of a source's ``LateUsage`` deltas (summed there)."""


@dataclass(frozen=True, slots=True)
class UsageField:
    model: str
    window_start: int
    window_end: int
    source: str


def usage_field(model: str, window_start: int, window_end: int, producer: str) -> str:
    """The field of one (model, window, source) total."""
    return f"{model}{SEPARATOR}{window_start}{SEPARATOR}{window_end}{SEPARATOR}{producer}"


def parse_usage_field(field: str) -> UsageField | None:
    """The parts of ``field``, or None when it is not ``model|start|end|producer`` either way."""
    for parts in (field.rsplit(SEPARATOR, 3), field.split(SEPARATOR, 3)):
        if len(parts) != 4:
            return None
        model, start, end, source = parts
        if model and ascii_digits(start, 20) and ascii_digits(end, 20):
            return UsageField(model, int(start), int(end), source)
    return None


def usage_totals(reply: Mapping[Reply, Reply]) -> tuple[list[tuple[UsageField, int]], list[str]]:
    """A ``HGETALL`` of a usage hash as (field, count) pairs, and the fields skipped (not a
    field ``usage_field`` writes, or a count that is no integer)."""
    totals: list[tuple[UsageField, int]] = []
    skipped: list[str] = []
    for raw_field, raw_value in reply.items():
        field, value = text(raw_field), text(raw_value)
        parsed = parse_usage_field(field)
        if parsed is None or not ascii_digits(value.removeprefix("-"), 20):
            skipped.append(field)
            continue
        totals.append((parsed, int(value)))
    return totals, skipped
