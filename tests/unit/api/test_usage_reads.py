"""``GET /v1/usage`` and ``GET /v1/forecast`` read a usage hash with fields they cannot take
apart (a model or producer with ``|`` from a record written to Kafka directly) without failing:
such a field used to raise ``ValueError`` in every later read (a permanent 500)."""

from __future__ import annotations

import logging

import pytest

from ledgerflow.api import usage
from ledgerflow.api.forecast import parse_horizon, series_of
from ledgerflow.api.usage import windows
from ledgerflow.errors import ValidationError

TOKENS = {
    b"slm-1|1000000|2000000|ledgerflow-usage/p0": b"5",
    b"slm-1|1000000|2000000|ledgerflow-usage/p1": b"3",
    b"evil|model|1000000|2000000|ledgerflow-usage/p0": b"7",
    b"not a field": b"1",
}
TURNS = {
    b"slm-1|1000000|2000000|ledgerflow-usage/p0": b"2",
    b"evil|model|1000000|2000000|ledgerflow-usage/p0": b"1",
}


def test_usage_reads_a_model_with_the_separator_and_skips_what_it_cannot_read(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(usage, "_warned", False)
    with caplog.at_level(logging.WARNING, logger="ledgerflow.api.usage"):
        view = windows(TOKENS, TURNS)
        windows(TOKENS, TURNS)
    assert view["models"] == ["evil|model", "slm-1"]
    assert [(w["model"], w["tokens"], w["turns"]) for w in view["windows"]] == [
        ("evil|model", 7, 1),
        ("slm-1", 8, 2),
    ]
    assert [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()] == [
        "usage read model: 1 field(s) skipped that are not model|start|end|producer, e.g. 'not a field' "
        "(logged once per process)"
    ]


def test_the_forecast_series_reads_a_model_with_the_separator() -> None:
    assert series_of(TOKENS, "evil|model") == ([1000000], [7.0])
    assert series_of(TOKENS, "slm-1") == ([1000000], [8.0])


@pytest.mark.parametrize("raw", ["٣", "1_0", " 3", "+3", "3.0", "0", "61", ""])
def test_a_horizon_is_ascii_digits_in_range(raw: str) -> None:
    with pytest.raises(ValidationError, match="^horizon: "):
        parse_horizon(raw)


def test_a_horizon_parses_or_defaults() -> None:
    assert (parse_horizon(None), parse_horizon("3"), parse_horizon("60")) == (5, 3, 60)


def test_usage_answers_the_newest_windows_and_says_how_many_there_are() -> None:
    """The usage hash gains a field per model, window and source partition and is never trimmed
    (a month of one model's 60 s windows is 43,200 of them): the answer held every window ever,
    polled every 5 s by the console's Usage page to show 40. Now the newest ``limit`` windows,
    the count of all, and each model's totals (the page's per-model sums and forecast gate)."""
    window = 60_000_000
    tokens = {f"m{i % 2}|{i * window}|{(i + 1) * window}|p0".encode(): str(i).encode() for i in range(10)}
    turns = {field: b"1" for field in tokens}
    view = windows(tokens, turns, limit=3)
    assert view["window_count"] == 10
    assert [(w["model"], w["tokens"]) for w in view["windows"]] == [("m1", 7), ("m0", 8), ("m1", 9)]
    assert view["models"] == ["m0", "m1"]
    assert view["totals"] == [
        {"model": "m0", "windows": 5, "tokens": 0 + 2 + 4 + 6 + 8, "turns": 5},
        {"model": "m1", "windows": 5, "tokens": 1 + 3 + 5 + 7 + 9, "turns": 5},
    ]
    assert len(windows(tokens, turns)["windows"]) == 10  # the default holds them all here
