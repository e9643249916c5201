"""``GET /v1/usage`` and ``GET /v1/forecast`` on a usage read model holding fields written from
records that bypassed the edge (a model or producer with ``|``, or garbage): 200, never a 500.

The read model is written straight into Redis (no worker), as the projection would have left it.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis

from ledgerflow.config import Settings
from ledgerflow.projections.keys import Keys
from tests.integration import edgekit

WINDOW = 60_000_000
START = 1_700_000_000_000_000


@pytest.fixture
def store(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    keys = Keys.for_prefix(settings.topic_prefix)
    tokens, turns = keys.usage("acme"), keys.usage_turns("acme")
    for i in range(4):
        start = START + i * WINDOW
        for model, producer in (("evil|model", "ledgerflow-usage/p0"), ("slm-1", "direct|writer")):
            field = f"{model}|{start}|{start + WINDOW}|{producer}"
            client.hset(tokens, field, 100 * (i + 1))
            client.hset(turns, field, i + 1)
    client.hset(tokens, "garbage", 1)
    yield client
    client.delete(tokens, turns)
    client.close()


def test_usage_and_forecast_read_fields_with_the_separator_and_skip_garbage(
    settings: Settings, edge: str, store: redis.Redis
) -> None:
    headers = edgekit.bearer(settings, roles="subscriber")
    usage = httpx.get(f"{edge}/v1/usage", headers=headers, timeout=10)
    assert usage.status_code == 200, usage.text
    assert usage.json()["models"] == ["evil|model", "slm-1"]
    assert sum(w["tokens"] for w in usage.json()["windows"]) == 2 * (100 + 200 + 300 + 400)
    for model in ("evil|model", "slm-1"):
        forecast = httpx.get(
            f"{edge}/v1/forecast", params={"model": model, "horizon": 2}, headers=headers, timeout=10
        )
        assert forecast.status_code == 200, forecast.text
        assert [h["tokens"] for h in forecast.json()["history"]] == [100, 200, 300, 400]


def test_usage_answers_at_most_limit_newest_windows_with_the_count_of_all(
    settings: Settings, edge: str, store: redis.Redis
) -> None:
    headers = edgekit.bearer(settings, roles="subscriber")
    usage = httpx.get(f"{edge}/v1/usage", params={"limit": 3}, headers=headers, timeout=10)
    assert usage.status_code == 200, usage.text
    body = usage.json()
    assert body["window_count"] == 8 and len(body["windows"]) == 3
    assert [w["tokens"] for w in body["windows"]] == [300, 400, 400]  # the newest, oldest first
    assert {t["model"]: (t["windows"], t["tokens"]) for t in body["totals"]} == {
        "evil|model": (4, 1000),
        "slm-1": (4, 1000),
    }
    refused = httpx.get(f"{edge}/v1/usage", params={"limit": "0"}, headers=headers, timeout=10)
    assert edgekit.assert_problem(refused, 422)["detail"].startswith("limit")


def test_the_forecast_answers_the_newest_history_windows_and_fits_them_all(
    settings: Settings, edge: str, store: redis.Redis
) -> None:
    """The history held every window of the model ever (a month is 43,200), charted every 5 s by
    the Usage page; now the newest ``history`` of them, with ``history_count``."""
    headers = edgekit.bearer(settings, roles="subscriber")
    whole = httpx.get(f"{edge}/v1/forecast", params={"model": "slm-1"}, headers=headers, timeout=10).json()
    page = httpx.get(
        f"{edge}/v1/forecast", params={"model": "slm-1", "history": 2}, headers=headers, timeout=10
    ).json()
    assert [h["tokens"] for h in page["history"]] == [300, 400] and page["history_count"] == 4
    assert whole["history_count"] == 4 and len(whole["history"]) == 4
    assert page["forecast"] == whole["forecast"]  # fitted over every window either way
    refused = httpx.get(
        f"{edge}/v1/forecast", params={"model": "slm-1", "history": "0"}, headers=headers, timeout=10
    )
    assert edgekit.assert_problem(refused, 422)["detail"].startswith("history")


@pytest.mark.parametrize("horizon", ["٣", "1_0", " 3"])
def test_a_horizon_that_is_not_ascii_digits_is_a_422(
    settings: Settings, edge: str, store: redis.Redis, horizon: str
) -> None:
    """``int()`` read '٣' as 3 and '1_0' as 10: the forecast answered 200 to what no client meant."""
    resp = httpx.get(
        f"{edge}/v1/forecast",
        params={"model": "slm-1", "horizon": horizon},
        headers=edgekit.bearer(settings, roles="subscriber"),
        timeout=10,
    )
    assert edgekit.assert_problem(resp, 422)["detail"].startswith("horizon: ")
