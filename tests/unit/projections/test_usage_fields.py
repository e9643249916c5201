"""The usage read model's fields: written ``model|start|end|producer``, read back even when the
model or the producer holds a ``|`` (a record written to Kafka directly), skipped when unreadable."""

from __future__ import annotations

import pytest

from ledgerflow.projections.usage_fields import UsageField, parse_usage_field, usage_field, usage_totals


def test_a_field_reads_back_as_written() -> None:
    field = usage_field("slm-1", 10, 20, "ledgerflow-usage/p3")
    assert parse_usage_field(field) == UsageField("slm-1", 10, 20, "ledgerflow-usage/p3")


def test_a_model_with_the_separator_reads_back_from_the_right() -> None:
    field = usage_field("evil|model", 10, 20, "ledgerflow-usage/p0")
    assert parse_usage_field(field) == UsageField("evil|model", 10, 20, "ledgerflow-usage/p0")


def test_a_producer_with_the_separator_reads_back_from_the_left() -> None:
    field = usage_field("slm-1", 10, 20, "direct|writer")
    assert parse_usage_field(field) == UsageField("slm-1", 10, 20, "direct|writer")


@pytest.mark.parametrize(
    "field", ["", "slm-1", "slm-1|10|20", "slm-1|ten|20|p", "slm-1|10|٢٠|p", "|10|20|p", "a|b|10|x|y|z"]
)
def test_a_field_that_reads_neither_way_is_none(field: str) -> None:
    assert parse_usage_field(field) is None


def test_totals_skip_unreadable_fields_and_counts() -> None:
    reply = {
        b"slm-1|10|20|ledgerflow-usage/p0": b"5",
        b"a|b|10|20|ledgerflow-usage/p0": b"7",
        b"garbage": b"1",
        b"slm-1|20|30|ledgerflow-usage/p0": b"x",
    }
    totals, skipped = usage_totals(reply)
    assert totals == [
        (UsageField("slm-1", 10, 20, "ledgerflow-usage/p0"), 5),
        (UsageField("a|b", 10, 20, "ledgerflow-usage/p0"), 7),
    ]
    assert skipped == ["garbage", "slm-1|20|30|ledgerflow-usage/p0"]
