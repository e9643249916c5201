"""The rule pack catalog and the training history through a real edge read each record of their
topic once (``kafka/tail.py``), and one tenant's volume is not part of another tenant's request.

Before, every ``GET /v1/policy/packs`` read all of ``policy.rules`` (every tenant's packs) and
checked every version of the asking tenant again, and every ``GET /v1/training/history`` read the
tenant's whole partition of ``training.audit``: a tenant with many large versions or piles of
audit records made another tenant's reads slow, then 503s. Asserted on the edge's counters of
records read and publications checked, not on timings (the machine is shared). Both counters are
new: these tests fail on the old edge.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import (
    RulePackPublished,
    TrainingDisabled,
    TrainingEnabled,
    TrainingRejected,
)
from ledgerflow.policy import load_rule_pack
from ledgerflow.policy.wire import head_after
from ledgerflow.topics import POLICY_RULES, TRAINING_AUDIT

PACK = {"rules": [{"id": "secrets", "when": {"keywords": ["password"]}, "action": "deny", "weight": 10}]}


def _metric(edge: str, name: str, topic: str | None = None) -> float:
    label = "" if topic is None else f'{{topic="{topic}"}}'
    for line in httpx.get(f"{edge}/metrics", timeout=30).text.splitlines():
        if line.startswith(f"{name}{label} "):
            return float(line.split()[1])
    return 0.0


def _read(edge: str, topic: str) -> float:
    return _metric(edge, "ledgerflow_edge_index_records_read_total", topic)


def _checks(edge: str) -> float:
    return _metric(edge, "ledgerflow_edge_pack_checks_total")


def _send(settings: Settings, topic: str, events: list[Event]) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for event in events:
                await producer.send_and_wait(
                    settings.topic(topic), codec.encode(event), key=event.tenant.encode()
                )
        finally:
            await producer.stop()

    asyncio.run(send())


def _listed(edge: str, token: str) -> list[tuple[int, bool, str | None]]:
    resp = httpx.get(f"{edge}/v1/policy/packs", headers={"Authorization": f"Bearer {token}"}, timeout=60)
    assert resp.status_code == 200, resp.text
    return [(i["version"], i["signer_kid"] is not None, i["refused"]) for i in resp.json()["items"]]


def _publish(edge: str, token: str, description: str) -> None:
    put = httpx.put(
        f"{edge}/v1/policy/rules",
        json={**PACK, "description": description},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert put.status_code == 201, put.text


def _unsigned(tenant: str, version: int) -> Event:
    pack = load_rule_pack({**PACK, "tenant": tenant, "description": "unsigned"}).with_version(version)
    payload = RulePackPublished(version, pack.constitution_hash, pack.canonical_json().decode(), None)
    return new_event(
        RulePackPublished.TYPE,
        tenant=tenant,
        subject=tenant,
        payload=payload,
        producer="intruder",
        occurred_at_micros=time.time_ns() // 1000,
    )


def test_a_tenants_listing_reads_new_records_once_and_checks_only_its_own(
    settings: Settings, edge: str, tokens: Any
) -> None:
    acme, globex = tokens("acme", "admin"), tokens("globex", "admin")
    for n in range(6):
        _publish(edge, acme, f"acme v{n + 1}")
    _publish(edge, globex, "globex v1")
    _send(settings, POLICY_RULES, [_unsigned("globex", 2)])  # refused by the agents: listed as such
    read, checks = _read(edge, POLICY_RULES), _checks(edge)

    assert _listed(edge, globex) == [(2, False, "unsigned"), (1, True, None)]
    assert _read(edge, POLICY_RULES) - read == 8  # the records so far, read once
    assert _checks(edge) - checks == 2  # globex's two versions; none of acme's six
    read, checks = _read(edge, POLICY_RULES), _checks(edge)

    assert _listed(edge, globex) == [(2, False, "unsigned"), (1, True, None)]
    assert (_read(edge, POLICY_RULES), _checks(edge)) == (read, checks)  # nothing new: nothing read

    assert _listed(edge, acme) == [(v, True, None) for v in range(6, 0, -1)]
    assert _read(edge, POLICY_RULES) == read  # acme's records were read by globex's listing
    assert _checks(edge) - checks == 6
    read, checks = _read(edge, POLICY_RULES), _checks(edge)

    _publish(edge, acme, "acme v7")  # a version acknowledged before a listing is in it
    assert _listed(edge, globex) == [(2, False, "unsigned"), (1, True, None)]
    assert (_read(edge, POLICY_RULES) - read, _checks(edge) - checks) == (1, 0)
    assert _listed(edge, acme)[0] == (7, True, None)
    assert _checks(edge) - checks == 1  # only the new version

    auth = {"Authorization": f"Bearer {globex}"}
    one = httpx.get(f"{edge}/v1/policy/packs/2", headers=auth, timeout=30).json()
    assert (one["refused"], one["signer_kid"], one["pack"]["description"]) == ("unsigned", None, "unsigned")
    assert httpx.get(f"{edge}/v1/policy/packs/3", headers=auth, timeout=30).status_code == 404  # acme's v3


def test_a_listing_of_thousands_of_versions_answers_and_checks_only_a_page(
    settings: Settings, edge: str, tokens: Any
) -> None:
    """Anyone who can write Kafka can publish versions without the edge's publish rate: every
    listing answered (and checked: signature, then compile) every version of the tenant, and the
    console's Policy page rendered a row and two picker entries each. Now a page: the newest
    ``limit`` (or those before ``before``) with ``count``, and one version's read checks only it."""
    tenant = f"flood{time.time_ns()}"
    _send(settings, POLICY_RULES, [_unsigned(tenant, v) for v in range(1, 301)])
    auth = {"Authorization": f"Bearer {tokens(tenant, 'subscriber')}"}
    checks = _checks(edge)
    resp = httpx.get(f"{edge}/v1/policy/packs", params={"limit": 20}, headers=auth, timeout=60)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["count"] == 300
    assert [i["version"] for i in body["items"]] == list(range(300, 280, -1))
    assert _checks(edge) - checks == 20
    older = httpx.get(f"{edge}/v1/policy/packs", params={"limit": 5, "before": 281}, headers=auth, timeout=60)
    assert [i["version"] for i in older.json()["items"]] == [280, 279, 278, 277, 276]
    checks = _checks(edge)
    one = httpx.get(f"{edge}/v1/policy/packs/7", headers=auth, timeout=30)
    assert one.status_code == 200 and one.json()["version"] == 7
    assert _checks(edge) - checks == 1
    assert len(httpx.get(f"{edge}/v1/policy/packs", headers=auth, timeout=60).json()["items"]) == 100
    # Hostile paging: refused in one line, never a 500, never the whole book.
    for params in ({"limit": "0"}, {"limit": "1001"}, {"limit": "abc"}, {"before": "x"}, {"before": "٣"}):
        bad = httpx.get(f"{edge}/v1/policy/packs", params=params, headers=auth, timeout=30)
        assert bad.status_code == 422 and "\n" not in bad.json()["detail"], (params, bad.text)


def _chain(tenant: str, types: list[type], head: ChainHead | None = None) -> list[Event]:
    out = []
    version = 0 if head is None else head.sequence
    for kind in types:
        version += 1
        event = new_event(
            kind.TYPE,  # type: ignore[attr-defined]
            tenant=tenant,
            subject=tenant,
            payload=kind(f"cmd-{version}", version, "ana", "test", None, None),
            producer="ledgerflow-training",
            occurred_at_micros=time.time_ns() // 1000,
        )
        linked = link_event(event, head)
        head = head_after(linked)
        out.append(linked)
    return out


def _history(edge: str, token: str, **params: Any) -> list[dict[str, Any]]:
    resp = httpx.get(
        f"{edge}/v1/training/history", headers={"Authorization": f"Bearer {token}"}, params=params, timeout=60
    )
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


def test_a_tenants_history_reads_new_records_once_whatever_another_tenant_piles_up(
    settings: Settings, edge: str, tokens: Any
) -> None:
    piled = _chain("hist-a", [TrainingRejected] * 40)
    _send(settings, TRAINING_AUDIT, piled)
    _send(settings, TRAINING_AUDIT, _chain("hist-b", [TrainingEnabled, TrainingDisabled]))
    a, b = tokens("hist-a"), tokens("hist-b")
    read = _read(edge, TRAINING_AUDIT)

    mine = _history(edge, b)
    assert [(i["type"], i["sequence"], i["mode"], i["chain"]) for i in mine] == [
        ("TrainingDisabled", 2, "disabled", "ok"),
        ("TrainingEnabled", 1, "enabled", "ok"),
    ]
    assert _read(edge, TRAINING_AUDIT) - read == 42
    read = _read(edge, TRAINING_AUDIT)
    assert _history(edge, b) == mine
    assert _read(edge, TRAINING_AUDIT) == read

    more = _chain("hist-a", [TrainingRejected] * 25, head_after(piled[-1]))
    _send(settings, TRAINING_AUDIT, more)
    assert _history(edge, b) == mine
    assert _read(edge, TRAINING_AUDIT) - read == 25  # once, by whichever request came first
    read = _read(edge, TRAINING_AUDIT)

    newest = _history(edge, a, limit=5)
    assert [(i["sequence"], i["chain"]) for i in newest] == [(s, "ok") for s in range(65, 60, -1)]
    assert _read(edge, TRAINING_AUDIT) == read
    # The chain is still walked from its start: a forged link is broken, the records before it not.
    forged = _chain("hist-a", [TrainingDisabled], ChainHead("hist-a", 65, "e" * 64))
    _send(settings, TRAINING_AUDIT, forged)
    after = _history(edge, a, limit=3)
    assert [(i["sequence"], i["chain"]) for i in after] == [(66, "broken"), (65, "ok"), (64, "ok")]
