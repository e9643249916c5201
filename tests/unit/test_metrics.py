"""Metric helpers: closed label sets and where a worker serves its metrics."""

from __future__ import annotations

import pytest

from ledgerflow.metrics import (
    DEFAULT_WORKER_METRICS,
    WORKER_METRICS_ENV,
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
