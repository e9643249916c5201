"""Reading and judging Redis's ``maxmemory-policy`` (pure: replies are given, nothing connects)."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis._parsers.base import BaseParser

from ledgerflow.api.health import ERROR_REPLIES, refusal_reason
from ledgerflow.api.hub import topics_missing
from ledgerflow.redispolicy import (
    PolicyReading,
    answered,
    evicts,
    policy_from_config,
    policy_from_info,
    readiness_reason,
    verdict,
)

URL = "redis://10.0.0.5:6379/0"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "reply",
    [
        {"maxmemory-policy": "allkeys-lru"},
        {b"maxmemory-policy": b"allkeys-lru"},
        {"MAXMEMORY-POLICY": "AllKeys-LRU "},
    ],
)
def test_config_reply_gives_the_policy_str_or_bytes(reply: dict[object, object]) -> None:
    assert policy_from_config(reply) == "allkeys-lru"


def test_an_empty_config_reply_gives_none() -> None:
    assert policy_from_config({}) is None  # a managed Redis that hides the setting


def test_info_memory_gives_the_policy_parsed_or_raw() -> None:
    assert policy_from_info({"used_memory": 1024, "maxmemory_policy": "volatile-lru"}) == "volatile-lru"
    raw = b"# Memory\r\nused_memory:1024\r\nmaxmemory_policy:noeviction\r\nmem_fragmentation_ratio:1.2\r\n"
    assert policy_from_info(raw) == "noeviction"
    assert policy_from_info({"used_memory": 1024}) is None


@pytest.mark.parametrize(
    ("policy", "evicting"),
    [
        ("noeviction", False),
        (None, False),  # unknown: not refused
        ("volatile-lru", True),
        ("volatile-ttl", True),
        ("allkeys-random", True),
        ("allkeys-lfu", True),
    ],
)
def test_every_policy_but_noeviction_evicts(policy: str | None, evicting: bool) -> None:
    assert evicts(policy) is evicting


def test_an_evicting_server_is_refused_in_one_line_naming_url_and_policy() -> None:
    found = verdict(URL, [PolicyReading("10.0.0.5:6379", "allkeys-lru")])
    assert found.refusal is not None and found.warning is None
    assert found.refusal.startswith(
        f"Redis at {URL} evicts keys (maxmemory-policy allkeys-lru); ledgerflow needs noeviction: "
    )
    assert "\n" not in found.refusal


def test_a_cluster_names_the_evicting_nodes() -> None:
    readings = [
        PolicyReading("h:7000", "noeviction"),
        PolicyReading("h:7001", "volatile-lru"),
        PolicyReading("h:7002", "noeviction"),
    ]
    refusal = verdict(URL, readings).refusal
    assert refusal is not None and "(maxmemory-policy volatile-lru on h:7001)" in refusal


def test_noeviction_passes_without_a_word() -> None:
    assert verdict(URL, [PolicyReading("h:1", "noeviction")]) == verdict(URL, [])
    assert verdict(URL, []).refusal is None and verdict(URL, []).warning is None


def test_an_unreadable_policy_is_a_warning_not_a_refusal() -> None:
    why = "CONFIG GET refused: ERR unknown command; INFO refused: NOPERM this user has no permissions"
    found = verdict(URL, [PolicyReading("h:1", None, why)])
    assert found.refusal is None
    assert found.warning is not None and URL in found.warning and why in found.warning


def test_readiness_reason_names_an_evicting_policy_only() -> None:
    assert readiness_reason([PolicyReading("h:1", "noeviction")]) is None
    assert readiness_reason([PolicyReading("h:1", None, "refused")]) is None
    assert (
        readiness_reason([PolicyReading("h:1", "allkeys-lru")])
        == "evicts keys (maxmemory-policy allkeys-lru)"
    )


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("OOM command not allowed when used memory > 'maxmemory'.", "refuses writes: OOM"),
        ("READONLY You can't write against a read only replica.", "refuses writes: READONLY"),
        (
            "MISCONF Redis is configured to save RDB snapshots, but it's currently unable",
            "refuses writes: MISCONF",
        ),
        ("BUSY Redis is busy running a script.", "refuses writes: BUSY"),
        ("LOADING Redis is loading the dataset in memory", "refuses writes: LOADING"),
    ],
)
def test_a_refused_write_is_reported_by_the_replys_first_word(reply: str, reason: str) -> None:
    # parsed as redis-py parses an error reply (it strips the code of the errors it has a class for,
    # and LOADING's class is a ConnectionError)
    exc = _parsed(reply)
    assert refusal_reason(exc) == reason


def _parsed(reply: str) -> Exception:
    exc = BaseParser.parse_error(reply)
    assert isinstance(exc, ERROR_REPLIES)  # what the readiness probe reports by its code
    return exc


def test_missing_topics_are_named() -> None:
    assert topics_missing([]) is None
    assert topics_missing(["p.conversation.events"]) == "topic p.conversation.events missing"
    assert topics_missing(["b", "a"]) == "topics a, b missing"


def test_the_stack_and_compose_redis_never_evict() -> None:
    stack = (ROOT / "ledgerflow" / "stack" / "redis.py").read_text()
    assert '"--maxmemory-policy",\n            "noeviction",' in stack
    compose = (ROOT / "docker-compose.yml").read_text()
    assert '"--maxmemory-policy", "noeviction"' in compose


def test_a_cluster_node_out_of_reach_is_unknown_not_a_refusal_unless_none_answers() -> None:
    ok = PolicyReading("10.0.0.1:7000", "noeviction")
    down = ConnectionError("Error 111 connecting to 10.0.0.2:7001. Connection refused.")
    readings = answered([ok, down], ["10.0.0.1:7000", "10.0.0.2:7001"])
    assert readings == [ok, PolicyReading("10.0.0.2:7001", None, "unreachable (ConnectionError)")]
    found = verdict("redis+cluster://10.0.0.1:7000", readings)
    assert found.refusal is None and found.warning is not None and "10.0.0.2:7001" in found.warning
    assert readiness_reason(readings) is None  # one replica down: every edge stays ready
    with pytest.raises(ConnectionError):
        answered([down, TimeoutError()], ["a:1", "b:2"])  # nothing answered: no Redis at all
