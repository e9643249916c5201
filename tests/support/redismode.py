"""Which Redis the tests run against: ``LEDGERFLOW_TEST_REDIS=single`` (the default, one Redis) or
``cluster`` (a Redis Cluster; ``make test-redis-cluster``)."""

from __future__ import annotations

import os

import pytest


def redis_mode() -> str:
    mode = os.environ.get("LEDGERFLOW_TEST_REDIS", "single") or "single"
    if mode not in ("single", "cluster"):
        pytest.fail(f"LEDGERFLOW_TEST_REDIS={mode!r}: use single (the default) or cluster", pytrace=False)
    return mode
