"""Metric helpers: closed label sets and where a worker serves its metrics."""

from __future__ import annotations

import pytest

from ledgerflow.metrics import (
    DEFAULT_WORKER_METRICS,
    WORKER_METRICS_ENV,
    WORKER_REGISTRY,
    gc_paused,
    reason_label,
    worker_metrics_address,
)


@pytest.mark.parametrize(
    "code", ["truncated", "unknown-fingerprint", "chain-gap", "wrong-type-for-topic", "content-too-large"]
)
def test_a_reason_code_is_its_own_label(code: str) -> None:
    assert reason_label(code) == code


@pytest.mark.parametrize(
    "code",
    [
        "",
        "evaluation failed with ValueError",  # free text: a reason without a code
        "Undecodable",
        "x" * 49,
        "-leading-dash",
        "trace\nid",
        "déjà-vu",
    ],
)
def test_anything_but_a_short_kebab_code_is_other(code: str) -> None:
    assert reason_label(code) == "other"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, DEFAULT_WORKER_METRICS),
        ({WORKER_METRICS_ENV: "0.0.0.0:9100"}, "0.0.0.0:9100"),
        ({WORKER_METRICS_ENV: " 127.0.0.1:9 "}, "127.0.0.1:9"),
        ({WORKER_METRICS_ENV: "off"}, None),
        ({WORKER_METRICS_ENV: "OFF"}, None),
        ({WORKER_METRICS_ENV: "none"}, None),
        ({WORKER_METRICS_ENV: ""}, None),
    ],
)
def test_where_the_worker_serves_its_metrics(env: dict[str, str], expected: str | None) -> None:
    assert worker_metrics_address(env) == expected


def _pauses(label: str) -> float:
    value = WORKER_REGISTRY.get_sample_value("ledgerflow_gc_pause_seconds_count", {"generation": label})
    return value or 0.0


def test_a_collection_is_counted_under_its_generation_and_an_unknown_one_under_other() -> None:
    for label in ("0", "1", "2"):  # exported before the first collection
        assert (
            WORKER_REGISTRY.get_sample_value("ledgerflow_gc_pause_seconds_count", {"generation": label})
            is not None
        )
    before = {label: _pauses(label) for label in ("2", "other")}
    gc_paused(2, 0.06)
    gc_paused(7, 0.001)
    gc_paused(-1, 0.001)
    assert _pauses("2") == before["2"] + 1
    assert _pauses("other") == before["other"] + 2
    assert WORKER_REGISTRY.get_sample_value("ledgerflow_gc_pause_seconds_count", {"generation": "7"}) is None
