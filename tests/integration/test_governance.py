"""Governance on the real stack: rule packs in force, re-derivable decisions, and exactly
one chained decision per turn across SIGKILLs of the worker."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from pathlib import Path

import httpx
import pytest

from ledgerflow.api.publish_lock import PublicationBusy, publishing
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import Located, verify
from ledgerflow.kafka.logs import read_all
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.policy import TrainingState
from ledgerflow.policy.wire import decide, head_after
from ledgerflow.redisclient import async_client
from ledgerflow.rulepacks import latest_version
from ledgerflow.traffic import interleaved, publish
from tests.support.processes import Process, running_edge, start

PACK = {
    "tenant": "acme",
    "rules": [{"id": "no-pineapple", "when": {"keywords": ["pineapple"]}, "action": "deny", "weight": 9}],
}


def _step(edge: str, token: str, conv: str, content: str) -> dict:
    resp = httpx.post(
        f"{edge}/v1/conversation/step",
        json={"conversation_id": conv, "content": content},
        headers={"Authorization": f"Bearer {token}"},
        params={"wait": 20},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_published_pack_is_used_and_replaced_and_default_applies(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    admin = tokens("acme", "admin,producer")
    headers = {"Authorization": f"Bearer {admin}"}
    default = builtin_default_pack()
    # A tenant without a pack gets the default ('*').
    other = _step(edge, tokens("globex", "producer"), "g-1", "pineapple pizza?")
    assert (other["rule_pack_version"], other["constitution_hash"]) == (0, default.constitution_hash)
    assert other["outcome"] == "allow"

    first = httpx.put(f"{edge}/v1/policy/rules", json=PACK, headers=headers, timeout=30)
    assert first.status_code == 201, first.text
    v1 = first.json()
    decided = _step(edge, admin, "a-1", "pineapple pizza?")
    assert (decided["rule_pack_version"], decided["constitution_hash"]) == (
        v1["version"],
        v1["constitution_hash"],
    )
    assert decided["outcome"] == "deny" and decided["matched_rules"] == ["no-pineapple"]

    second_pack = {**PACK, "rules": [{**PACK["rules"][0], "action": "review", "weight": 1}]}
    v2 = httpx.put(f"{edge}/v1/policy/rules", json=second_pack, headers=headers, timeout=30).json()
    assert v2["version"] == v1["version"] + 1 and v2["constitution_hash"] != v1["constitution_hash"]
    decided = _step(edge, admin, "a-1", "pineapple pizza again")
    assert (decided["rule_pack_version"], decided["outcome"]) == (v2["version"], "review")


def test_bad_pack_is_refused_naming_the_rule_and_nothing_is_published(
    settings: Settings, edge: str, tokens
) -> None:
    headers = {"Authorization": f"Bearer {tokens('acme', 'admin')}"}
    bad = {
        "rules": [{"id": "broken-regex", "when": {"patterns": ["(unclosed"]}, "action": "deny", "weight": 1}]
    }
    resp = httpx.put(f"{edge}/v1/policy/rules", json=bad, headers=headers, timeout=30)
    assert resp.status_code == 422
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert "broken-regex" in resp.json()["detail"]
    assert asyncio.run(latest_version(settings, "acme")) == 0
    not_admin = httpx.put(
        f"{edge}/v1/policy/rules",
        json=PACK,
        timeout=30,
        headers={"Authorization": f"Bearer {tokens('acme', 'producer')}"},
    )
    assert not_admin.status_code == 403


def test_concurrent_publications_of_a_tenant_each_get_their_own_version(
    settings: Settings, log_dir: Path, edge: str, tokens
) -> None:
    """Publications racing each other, on one edge and on two: each is acknowledged with its own
    version and is listed as acknowledged. Before the publication lock, all of them picked the
    same version: every admin got a 201 naming it, and only one of the packs was ever in force."""
    headers = {"Authorization": f"Bearer {tokens('acme', 'admin')}"}

    def pack(n: int) -> dict:
        rule = {"id": f"race-{n}", "when": {"keywords": [f"k{n}"]}, "action": "review", "weight": 1}
        return {"rules": [rule]}

    with running_edge(settings, log_dir) as (_, other_edge):

        async def race() -> list[httpx.Response]:
            async with httpx.AsyncClient(timeout=60) as client:
                puts = [
                    client.put(f"{(edge, other_edge)[n % 2]}/v1/policy/rules", json=pack(n), headers=headers)
                    for n in range(6)
                ]
                return list(await asyncio.gather(*puts))

        answers = asyncio.run(race())
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]
    acknowledged = {a.json()["version"]: a.json()["constitution_hash"] for a in answers}
    assert sorted(acknowledged) == [1, 2, 3, 4, 5, 6]
    listed = httpx.get(f"{edge}/v1/policy/packs", headers=headers, timeout=30).json()["items"]
    assert {p["version"]: p["constitution_hash"] for p in listed} == acknowledged


def test_a_publication_waits_for_the_tenants_lock_and_gives_up_past_its_bound(settings: Settings) -> None:
    async def scenario() -> None:
        redis = async_client(settings.redis_url)
        try:
            async with publishing(redis, settings.topic_prefix, "acme"):
                with pytest.raises(PublicationBusy, match="under way for over 0.3 s"):
                    async with publishing(redis, settings.topic_prefix, "acme", wait_s=0.3):
                        pass
                async with publishing(redis, settings.topic_prefix, "globex", wait_s=0):
                    pass  # another tenant's lock
            async with publishing(redis, settings.topic_prefix, "acme", wait_s=0):
                pass  # released by its holder
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_step_with_idempotency_key_publishes_once(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    headers = {"Authorization": f"Bearer {tokens('acme', 'producer')}", "Idempotency-Key": uuid.uuid4().hex}
    body = {"conversation_id": "idem-1", "content": "hello"}
    answers = [
        httpx.post(
            f"{edge}/v1/conversation/step", json=body, headers=headers, params={"wait": 20}, timeout=30
        ).json()
        for _ in range(3)
    ]
    assert len({a["event_id"] for a in answers}) == 1
    assert len({a["decision_event_id"] for a in answers}) == 1
    assert len({a["consistency_token"] for a in answers}) == 1 and answers[0]["consistency_token"]
    events = asyncio.run(read_all(settings, settings.topic("conversation.events")))
    assert len(events) == 1


def _turns_and_decisions(settings: Settings) -> tuple[dict, list]:
    inputs = asyncio.run(read_all(settings, settings.topic("conversation.events")))
    decisions = asyncio.run(read_all(settings, settings.topic("policy.decisions")))
    turns = {}
    for raw in inputs:
        event = codec.decode(raw.value)
        if event.type == "MessageSubmitted":
            turns[event.event_id] = (event, raw.value)
    return turns, decisions


def test_every_decision_rederives_bit_for_bit(settings: Settings, worker: Process) -> None:
    events = list(interleaved(random.Random(7), ["acme", "globex"], 400, time.time_ns() // 1000))
    asyncio.run(publish(settings, iter(events)))
    expected = sum(1 for e in events if e.type == "MessageSubmitted")
    turns, decisions = _wait_for_decisions(settings, expected, worker)
    pack = builtin_default_pack()
    heads: dict = {}
    for raw in decisions:  # per partition, in offset order
        record = codec.decode(raw.value)
        event, value = turns[record.payload.input_event_id]
        again = decide(
            event,
            value,
            pack,
            TrainingState(record.payload.training_enabled, record.payload.training_version),
            heads.get(record.subject),
        )
        assert again is not None and codec.encode(again) == raw.value, (
            f"decision at {raw.topic}[{raw.partition}]@{raw.offset} does not re-derive"
        )
        heads[record.subject] = head_after(again)
    assert {d.payload.outcome for d in map(lambda r: codec.decode(r.value), decisions)} >= {"allow", "redact"}


def _wait_for_decisions(settings: Settings, expected: int, worker: Process, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while True:
        turns, decisions = _turns_and_decisions(settings)
        if len(decisions) >= expected or time.monotonic() > deadline:
            return turns, decisions
        time.sleep(1.0)


@pytest.mark.timeout(600)
def test_sigkilled_worker_leaves_exactly_one_decision_per_turn_and_unbroken_chains(
    settings: Settings, log_dir
) -> None:
    rng = random.Random(2026)
    events = list(interleaved(rng, ["acme", "globex", "initech"], 1200, time.time_ns() // 1000))
    expected = sum(1 for e in events if e.type == "MessageSubmitted")
    kills = 0
    worker = start(settings, "worker", "worker", log_dir=log_dir)
    try:

        async def feed() -> None:
            await publish(settings, iter(events), rate=600.0, progress_every_s=0)

        import threading

        producer = threading.Thread(target=lambda: asyncio.run(feed()))
        producer.start()
        while kills < 3:
            time.sleep(rng.uniform(4.0, 8.0))
            worker.kill()
            kills += 1
            worker = start(settings, "worker", "worker", log_dir=log_dir)
        producer.join()
        turns, decisions = _wait_for_decisions(settings, expected, worker, timeout=180)
    finally:
        worker.stop()
    decided = [codec.decode(raw.value).payload.input_event_id for raw in decisions]
    assert len(turns) == expected
    assert sorted(decided) == sorted(turns), (
        f"{len(decided)} decisions for {len(turns)} turns; "
        f"duplicates {len(decided) - len(set(decided))}, missing {len(set(turns) - set(decided))}"
    )
    located = [
        Located(
            raw.topic,
            raw.partition,
            raw.offset,
            codec.decode(raw.value).subject,
            codec.decode(raw.value).to_json(),
        )
        for raw in decisions
    ]
    assert verify(located) == []
