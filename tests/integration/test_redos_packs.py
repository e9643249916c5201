"""A rule pack pattern that backtracks without bound is refused at the edge (422, one line
naming the pattern and why), so no turn can stall the edge's event loop or a worker with it.

Before the fix, ``^(\\w+\\s?)+$`` was published (201) and one 29-character evaluation held
the edge's event loop for 36.8 s."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ledgerflow.auth.devkeys import ensure_policy_keys
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.dlq import read_dead_letters
from ledgerflow.policy.rulepack import check_rule_pack
from ledgerflow.policy.signing import sign
from ledgerflow.rulepacks import latest_version
from ledgerflow.topics import POLICY_RULES
from tests.integration.test_poison_records import (
    TENANT,
    TIMEOUT_S,
    event_id_of,
    produce,
    raw_turn,
    wait_decided,
)
from tests.support.processes import Process

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

    # The reviewer's turn, under the pack the tenant really has: answered (the client's timeout
    # bounds the wait; the hostile pack took 36.8 s and blocked /healthz as long).
    decided = httpx.post(f"{edge}/v1/evaluate", json={"content": "a" * 28 + "!"}, headers=headers, timeout=30)
    assert decided.status_code == 200, decided.text
    assert httpx.get(f"{edge}/healthz", timeout=10).status_code == 200


def test_a_hostile_pack_written_straight_to_policy_rules_is_dead_lettered_and_turns_are_decided(
    settings: Settings, worker: Process
) -> None:
    """The worker half of the reviewer's reproduction: the pack reaches ``policy.rules``
    without the edge. Before the fix the worker admitted it and one 29-character turn held
    its loop ~22 s (other tenants' decisions stalled, consumer sessions expired)."""
    # Signed by the trusted dev key, with its true hash: only its pattern can refuse it (an
    # unsigned one is refused before anything is compiled).
    checked = check_rule_pack({**PACK, "tenant": TENANT})
    keys = ensure_policy_keys(settings.state_dir)
    signature = sign(
        checked.document(),
        private_key=load_pem_private_key(keys.private_key_pem, password=None),
        kid=keys.kid,
        alg=keys.alg,
        signed_at=int(time.time()),
    )
    record = codec.encode(
        new_event(
            "RulePackPublished",
            tenant=TENANT,
            subject=TENANT,
            payload=RulePackPublished(
                version=1,
                constitution_hash=checked.constitution_hash,
                document=checked.canonical.decode(),
                signature=signature,
            ),
            producer="edge:mallory",
            occurred_at_micros=time.time_ns() // 1000,
        )
    )

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic(POLICY_RULES), record, key=TENANT.encode())
        finally:
            await producer.stop()

    asyncio.run(send())
    deadline = time.monotonic() + TIMEOUT_S
    letters: list = []
    while time.monotonic() < deadline and not letters:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        letters = [x.letter for x in asyncio.run(read_dead_letters(settings, POLICY_RULES))]
        time.sleep(0.5)
    [letter] = letters
    assert letter.reason_code == "invalid-rule-pack" and "backtracks exponentially" in letter.reason, letter

    conv = f"conv-{uuid.uuid4().hex[:8]}"
    turn = raw_turn(conv, "t-1", time.time_ns() // 1000, content="a" * 28 + "!")
    asyncio.run(produce(settings, conv.encode(), [turn]))
    wait_decided(settings, conv, [event_id_of(turn)], worker)
