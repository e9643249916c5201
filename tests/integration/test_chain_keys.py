"""Two tenants using the same conversation id keep separate decision chains, on the real
broker, Redis and worker (docs/hash-chains.md, "Rule: conversation ids may repeat across
tenants").

Turns of tenants A and B, both in conversation ``c-2``, are written interleaved straight to
``conversation.events``: each tenant's decisions form their own chain from sequence 1, the
projector quarantines none of them, ``ledgerflow audit`` (logs and read models rebuilt and
diffed) is clean, and each tenant's live conversation holds its own decisions only.
"""

from __future__ import annotations

import asyncio
import time
import uuid

from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ZERO_HASH
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted, PolicyDecision
from ledgerflow.kafka.logs import read_all
from ledgerflow.redisclient import sync_client
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS
from tests.integration.fuzzkit import Planned, produce, read_models_caught_up, wait_until
from tests.support.processes import Process, live_keys

CONV = "c-2"
TENANTS = ("ck-alpha", "ck-beta")
TURNS = 3
TIMEOUT_S = 90.0


def turn(tenant: str, n: int) -> Planned:
    event = new_event(
        "MessageSubmitted",
        tenant=tenant,
        subject=CONV,
        producer="gateway",
        payload=MessageSubmitted(f"t-{n}-{uuid.uuid4().hex[:8]}", "user", f"hello {n}", "slm-1", 3),
        occurred_at_micros=time.time_ns() // 1000,
    )
    return Planned(
        CONVERSATION_EVENTS, f"{tenant} turn {n}", codec.encode(event), CONV.encode(), "good", event.event_id
    )


def decisions(settings: Settings) -> list[Event]:
    found = []
    for raw in asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS))):
        record = codec.decode(raw.value or b"")
        if isinstance(record.payload, PolicyDecision):
            found.append(record)
    return found


def test_two_tenants_sharing_a_conversation_id_get_two_chains_and_a_clean_audit(
    settings: Settings, worker: Process
) -> None:
    plan = [turn(tenant, n) for n in range(1, TURNS + 1) for tenant in TENANTS]  # A1 B1 A2 B2 A3 B3
    asyncio.run(produce(settings, plan))
    assert len({(p.partition, p.base) for p in plan}) == 1, "one key: one partition, interleaved"

    expected = {p.answer_id for p in plan}
    done, state = wait_until(
        lambda: (
            {d.payload.input_event_id for d in decisions(settings)} >= expected,  # type: ignore[union-attr]
            "decisions",
        ),
        "every turn decided",
        worker,
        TIMEOUT_S,
    )
    assert done, f"{state}\n{worker.log_tail()}"

    # Step 1. Each tenant's decisions form their own chain, from sequence 1.
    by_tenant: dict[str, list[Event]] = {t: [] for t in TENANTS}
    for record in decisions(settings):
        by_tenant[record.tenant].append(record)
    for tenant, chain in by_tenant.items():
        wanted = [p.answer_id for p in plan if p.label.startswith(tenant)]
        assert [d.payload.input_event_id for d in chain] == wanted, tenant  # type: ignore[union-attr]
        assert [d.sequence for d in chain] == list(range(1, TURNS + 1)), tenant
        assert [d.prev_hash for d in chain] == [ZERO_HASH] + [d.hash for d in chain[:-1]], tenant

    # Step 2. The live read models hold every decision of each tenant, none quarantined.
    done, state = wait_until(lambda: asyncio.run(read_models_caught_up(settings)), "read models", worker, 60)
    assert done, state
    client = sync_client(settings.redis_url, socket_timeout=10)
    try:
        keys = live_keys(client, settings)
        for tenant in TENANTS:
            assert client.hgetall(keys.conversation_quarantine(tenant, CONV)) == {}, tenant
            assert client.hlen(keys.conversation_decisions(tenant, CONV)) == TURNS, tenant
    finally:
        client.close()

    # Step 3. The audit re-derives every decision and finds the live read models equal a rebuild.
    report = asyncio.run(run_audit(settings, projections=True, progress=False))
    assert report.clean, [str(f) for f in report.ordered()][:10]
    assert report.stats["decisions re-derived"] == len(plan)
