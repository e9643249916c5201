"""The chaos run's pure parts: the seeded fault plan, how answers are judged, and the checks that
compare what clients were told with what the log and the read models hold."""

from __future__ import annotations

import itertools
import math
from collections import Counter

import pytest

from ledgerflow.api import cursors
from ledgerflow.chaos.answers import judge
from ledgerflow.chaos.checks import Logged, acknowledged_once, one_decision_per_turn, served_once
from ledgerflow.chaos.cli import parse_duration, parse_kinds, parse_rate
from ledgerflow.chaos.faults import kinds_for
from ledgerflow.chaos.load import Ack
from ledgerflow.chaos.plan import plan
from ledgerflow.chaos.report import ChaosReport, lines
from ledgerflow.chaos.run import ChaosConfig
from ledgerflow.errors import ValidationError

KINDS = ("a", "b", "c", "d")


def test_the_plan_is_a_function_of_the_seed_and_holds_every_kind() -> None:
    first = plan(7, 120, KINDS, (10, 20))
    assert first == plan(7, 120, KINDS, (10, 20))
    assert first != plan(8, 120, KINDS, (10, 20))
    assert {p.kind for p in first} == set(KINDS)
    times = [p.at_s for p in first]
    assert times == sorted(times) and times[0] >= 10
    assert all(10 <= b - a <= 20.2 for a, b in itertools.pairwise(times))


def test_a_run_too_short_for_every_kind_still_plans_each_once() -> None:
    short = plan(1, 5, KINDS, (10, 20))
    assert sorted(p.kind for p in short) == sorted(KINDS)


def test_a_long_run_fills_its_duration() -> None:
    long = plan(3, 1800, KINDS, (20, 45))
    assert len(long) >= 1800 // 45
    assert long[-1].at_s <= 1800 + 45
    with pytest.raises(ValueError, match="at least one fault kind"):
        plan(1, 10, (), (1, 2))


@pytest.mark.parametrize(
    ("path", "status", "ctype", "retry", "ok", "documented"),
    [
        ("edge-events", 202, "application/json", None, True, True),
        ("step", 503, "application/problem+json", "5", False, True),
        ("step", 503, "application/problem+json", None, False, False),  # no Retry-After
        ("step", 503, "text/plain", "5", False, False),  # not a problem
        ("step", 500, "application/problem+json", None, False, False),
        ("edge-events", 429, "application/problem+json", "1", False, True),
        ("training-edge", 409, "application/problem+json; charset=utf-8", None, True, True),
        ("edge-events", 409, "application/problem+json", None, False, False),  # a valid event is no conflict
        ("edge-events", 422, "application/problem+json", None, False, False),
    ],
)
def test_answers_are_judged_against_what_the_api_documents(
    path: str, status: int, ctype: str, retry: str | None, ok: bool, documented: bool
) -> None:
    verdict = judge(path, status, ctype, retry)
    assert (verdict.label, verdict.ok, verdict.documented) == (str(status), ok, documented)


def _turn(key: str, conv: str = "c1", partition: int = 0, offset: int = 0) -> Logged:
    return Logged(key, "MessageSubmitted", "acme", conv, partition, offset)


def _decision(key: str, decides: str, conv: str = "c1", offset: int = 0) -> Logged:
    return Logged(key, "PolicyDecision", "acme", conv, 0, offset, decides)


def test_an_acknowledged_record_must_be_on_the_log_once_where_acknowledged() -> None:
    acks = [Ack("edge-events", k, "acme", "c1", 0, o) for o, k in enumerate("abcd")]
    logged = [_turn("a", offset=0), _turn("b", offset=1), _turn("b", offset=9), _turn("d", offset=7)]
    found = acknowledged_once(acks, logged)
    assert len(found) == 3
    assert found[0].startswith("1 acknowledged records not on the log: edge-events c")
    assert found[1].startswith("1 acknowledged records on the log more than once: edge-events b at 0@1, 0@9")
    assert found[2].startswith("1 acknowledged records elsewhere than acknowledged: edge-events d")
    assert acknowledged_once(acks[:1], logged) == []
    # an unacknowledged record may be on the log (a 503 after the write): not a discrepancy
    assert acknowledged_once([], logged) == []


def test_every_turn_has_one_decision_and_the_read_model_counts_the_turns() -> None:
    events = [_turn("t1"), _turn("t2"), _turn("t3", conv="c2")]
    decisions = [_decision("d1", "t1"), _decision("d2", "t2"), _decision("d3", "t3", conv="c2")]
    counts = {("acme", "c1"): 2, ("acme", "c2"): 1}
    assert one_decision_per_turn(events, decisions, counts) == []
    doubled = one_decision_per_turn(events, [*decisions, _decision("d4", "t2", offset=5)], counts)
    assert doubled == ["1 turns decided more than once: acme/c1 turn t2 ×2"]
    lost = one_decision_per_turn(events, decisions[1:], counts)
    assert lost == ["1 turns without a decision: acme/c1 turn t1"]
    short = one_decision_per_turn(events, decisions, {("acme", "c1"): 1, ("acme", "c2"): 1})
    assert short == ["1 conversations whose read model counts other turns than the log: acme/c1: "
                     "2 turns on the log, 1 in the read model"]  # fmt: skip
    stray = one_decision_per_turn(events[:2], decisions, {("acme", "c1"): 2})
    assert stray == ["1 decisions of turns not on the log: acme/c2 decision for t3"]


def test_a_subscriber_must_have_been_served_every_record_up_to_its_cursor_once() -> None:
    records = {
        "e": [_turn("t1", offset=3), _turn("t2", offset=8)],
        "d": [_decision("d1", "t1", offset=4), _decision("d2", "t2", offset=9)],
    }
    cursor = cursors.encode({("e", 0): 8, ("d", 0): 4})  # served t1, d1, t2; not yet d2
    assert served_once("c1", Counter({"t1": 1, "d1": 1, "t2": 1}), cursor, records) == []
    [gap] = served_once("c1", Counter({"t1": 1, "t2": 1}), cursor, records)
    assert "1 frames never served ['d1']" in gap
    [twice] = served_once("c1", Counter({"t1": 2, "d1": 1, "t2": 1}), cursor, records)
    assert "1 served twice ['t1']" in twice
    assert served_once("c1", Counter(), None, records) == []  # never served anything, never claimed to


def test_durations_and_kinds_from_the_command_line() -> None:
    assert parse_duration("30m") == 1800 and parse_duration("90") == 90 and parse_duration("1.5h") == 5400
    for bad in ("", "0", "-5m", "10d", "m"):
        with pytest.raises(ValidationError, match="--duration"):
            parse_duration(bad)
    every = parse_kinds(None)
    assert "broker-kill-leader" in every and "redis-kill" in every and "redis-failover" not in every
    on_cluster = parse_kinds(None, redis_cluster=True)
    assert "redis-failover" in on_cluster and "redis-kill" not in on_cluster
    assert parse_kinds("redis-kill, edge-kill") == ("redis-kill", "edge-kill")
    with pytest.raises(ValidationError, match="unknown kind"):
        parse_kinds("redis-kill,meteor")
    for empty in ("", " , "):  # not "every kind": that is leaving --faults out
        with pytest.raises(ValidationError, match="names no kind"):
            parse_kinds(empty)
    with pytest.raises(ValidationError, match="redis-failover needs a Redis Cluster"):
        parse_kinds("redis-failover")
    assert parse_kinds("redis-failover", redis_cluster=True) == ("redis-failover",)
    with pytest.raises(ValidationError, match="redis-kill needs one Redis"):
        parse_kinds("redis-kill", redis_cluster=True)
    assert parse_rate(0.5) == 0.5
    for rate in (0.0, -3.0, math.nan, math.inf):
        with pytest.raises(ValidationError, match="--rate must be a positive number"):
            parse_rate(rate)


def test_the_report_names_the_redis_topology_that_ran() -> None:
    one, cluster = ChaosReport(seed=1, duration_s=30.0), ChaosReport(seed=1, duration_s=30.0, redis="cluster")
    assert (one.to_json()["redis"], cluster.to_json()["redis"]) == ("single", "cluster")
    assert lines(one)[1] == "redis: one"
    assert lines(cluster)[1] == "redis: a Redis Cluster (three masters, a replica each)"


def test_a_run_without_chosen_kinds_plans_every_kind_of_its_redis() -> None:
    assert ChaosConfig(30.0, 1).fault_kinds == kinds_for(redis_cluster=False)
    on_cluster = ChaosConfig(30.0, 1, redis_cluster=True).fault_kinds
    assert on_cluster == kinds_for(redis_cluster=True)
    assert "redis-failover" in on_cluster and "redis-pause" in on_cluster and "redis-kill" not in on_cluster
    assert ChaosConfig(30.0, 1, kinds=("edge-kill",), redis_cluster=True).fault_kinds == ("edge-kill",)
