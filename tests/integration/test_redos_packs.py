"""A rule pack pattern that backtracks without bound is refused at the edge (422, one line
naming the pattern and why), so no turn can stall the edge's event loop or a worker with it.

Before the fix, ``^(\\w+\\s?)+$`` was published (201) and one 29-character evaluation held
the edge's event loop for 36.8 s."""

from __future__ import annotations

import asyncio
import time

import httpx

from ledgerflow.config import Settings
from ledgerflow.rulepacks import latest_version

HOSTILE = r"^(\w+\s?)+$"
PACK = {
    "tenant": "acme",
    "rules": [{"id": "words", "when": {"patterns": [HOSTILE]}, "action": "review", "weight": 1}],
}


def test_a_pack_with_an_exponential_pattern_is_refused_and_the_edge_stays_responsive(
    settings: Settings, edge: str, tokens
) -> None:
    headers = {"Authorization": f"Bearer {tokens('acme', 'admin,producer')}"}
    published = httpx.put(f"{edge}/v1/policy/rules", json=PACK, headers=headers, timeout=30)
    assert published.status_code == 422, published.text
    assert published.headers["content-type"].startswith("application/problem+json")
    detail = published.json()["detail"]
    assert f"rule 'words' (rules[0]).when.patterns[0] {HOSTILE!r}: " in detail
    assert "backtracks exponentially" in detail and "\n" not in detail
    assert asyncio.run(latest_version(settings, "acme")) == 0

    validated = httpx.post(f"{edge}/v1/policy/validate", json=PACK, headers=headers, timeout=30)
    assert validated.status_code == 422, validated.text
    [error] = validated.json()["errors"]
    assert error["rule"] == "words" and "backtracks exponentially" in error["message"]

    # The reviewer's turn, under the pack the tenant really has: answered at once.
    started = time.monotonic()
    decided = httpx.post(f"{edge}/v1/evaluate", json={"content": "a" * 28 + "!"}, headers=headers, timeout=30)
    assert decided.status_code == 200, decided.text
    assert httpx.get(f"{edge}/healthz", timeout=10).status_code == 200
    assert time.monotonic() - started < 5
