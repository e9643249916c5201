"""``GET /v1/conversations/{id}`` answers one bounded page of the turns, not the whole list.

The read model is written straight into Redis (no worker): a conversation of many turns, and
one of large turns, as the projection would have left them.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest
import redis

from ledgerflow.config import Settings
from ledgerflow.projections.keys import Keys
from tests.integration import edgekit


@pytest.fixture
def store(settings: Settings) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.redis_url)
    keys = Keys.for_prefix(settings.topic_prefix)
    yield client
    for conv in ("many", "large"):
        base = keys.conversation("acme", conv)
        client.delete(base, f"{base}:turns", f"{base}:decisions")
    client.close()


def _seed(client: redis.Redis, settings: Settings, conv: str, turns: int, content: str) -> None:
    keys = Keys.for_prefix(settings.topic_prefix)
    client.hset(keys.conversation("acme", conv), mapping={"status": "open", "turns": turns, "tokens": 0})
    entries = [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "turn_id": f"t{i}",
                "role": "user",
                "content": content,
                "model": "m",
                "tokens": None,
                "occurred_at": 1_700_000_000_000_000 + i,
            }
        )
        for i in range(turns)
    ]
    for at in range(0, turns, 500):
        client.rpush(keys.conversation_turns("acme", conv), *entries[at : at + 500])
    decisions = {
        f"e{i}": orjson.dumps({"input_event_id": f"e{i}", "outcome": "allow"}) for i in range(0, turns, 2)
    }
    client.hset(keys.conversation_decisions("acme", conv), mapping=decisions)


def _get(edge: str, conv: str, headers: dict, **params: object) -> httpx.Response:
    return httpx.get(f"{edge}/v1/conversations/{conv}", params=params, headers=headers, timeout=30)


def test_turns_are_paged_newest_first_each_page_oldest_first_with_its_decisions(
    settings: Settings, edge: str, store: redis.Redis
) -> None:
    _seed(store, settings, "many", 450, "hi")
    headers = edgekit.bearer(settings, roles="subscriber")
    first = _get(edge, "many", headers)
    assert first.status_code == 200, first.text
    view = first.json()
    assert (view["turn_count"], len(view["turns"]), view["turns_start"], view["turns_next"]) == (
        450,
        200,
        250,
        250,
    )
    assert [t["turn_id"] for t in view["turns"]] == [f"t{i}" for i in range(250, 450)]
    assert [t["decision"] is not None for t in view["turns"][:4]] == [True, False, True, False]
    seen = [t["turn_id"] for t in view["turns"]]
    pages = 1
    while view["turns_next"] is not None:
        view = _get(edge, "many", headers, turns_before=view["turns_next"], turns_limit=150).json()
        seen = [t["turn_id"] for t in view["turns"]] + seen
        pages += 1
    assert seen == [f"t{i}" for i in range(450)] and pages == 3 and view["turns_start"] == 0
    assert len(_get(edge, "many", headers, turns_limit=1000).json()["turns"]) == 450


def test_a_page_of_large_turns_stops_at_the_byte_budget(
    settings: Settings, edge: str, store: redis.Redis
) -> None:
    _seed(store, settings, "large", 300, "x" * 60_000)  # 18 MB of turns
    headers = edgekit.bearer(settings, roles="subscriber")
    resp = _get(edge, "large", headers, turns_limit=1000)
    assert resp.status_code == 200, resp.text
    view = resp.json()
    assert len(resp.content) < 8 * 1024 * 1024 + 100_000  # MAX_PAGE_BYTES and the rest of the view
    assert 100 < len(view["turns"]) < 300 and view["turns"][-1]["turn_id"] == "t299"
    assert view["turns_next"] == view["turns_start"] == 300 - len(view["turns"])


@pytest.mark.parametrize(
    "params",
    [
        {"turns_limit": "0"},
        {"turns_limit": "1001"},
        {"turns_limit": "٣"},
        {"turns_before": "-1"},
        {"turns_before": "1_0"},
    ],
)
def test_a_bad_page_parameter_is_a_422(settings: Settings, edge: str, params: dict) -> None:
    resp = _get(edge, "many", edgekit.bearer(settings, roles="subscriber"), **params)
    body = edgekit.assert_problem(resp, 422)
    assert next(iter(params)) in body["detail"]
