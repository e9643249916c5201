"""Signed constitutions end to end: packs written straight to ``policy.rules`` (raw aiokafka,
bypassing the edge) without a valid signature are refused — dead-lettered with their reason,
counted by ``ledgerflow_policy_packs_refused_total{reason}``, the pack in force stays — and a
validly signed pack takes effect; decisions record the signer; the audit verifies both."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric import ed25519

from ledgerflow.audit.cli import run_audit
from ledgerflow.auth.devkeys import ensure_policy_keys
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import MessageSubmitted, PolicyDecision, RulePackPublished
from ledgerflow.dlq import read_dead_letters
from ledgerflow.kafka.logs import read_all
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.netutil import free_port
from ledgerflow.policy import load_rule_pack
from ledgerflow.policy.signing import sign
from ledgerflow.rulepacks import publish_pack, sign_with
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS, POLICY_RULES
from tests.support.processes import Process, start

TIMEOUT_S = 90.0


def _document(tenant: str, deny_hello: bool) -> dict[str, Any]:
    doc = builtin_default_pack().document()
    doc.pop("version", None)
    doc["tenant"] = tenant
    if deny_hello:
        doc["rules"] = [
            *doc["rules"],
            {"id": "no-hello", "action": "deny", "weight": 1, "when": {"keywords": ["hello"]}},
        ]
    return doc


def _record(tenant: str, version: int, document: dict[str, Any], signature: str | None) -> bytes:
    pack = load_rule_pack(document).with_version(version)
    payload = RulePackPublished(version, pack.constitution_hash, pack.canonical_json().decode(), signature)
    event = new_event(
        "RulePackPublished",
        tenant=tenant,
        subject=tenant,
        payload=payload,
        producer="edge:mallory",
        occurred_at_micros=time.time_ns() // 1000,
    )
    return codec.encode(event)


async def _produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(settings.topic(topic), value, key=key)
    finally:
        await producer.stop()


def _turn(settings: Settings, tenant: str, conv: str) -> str:
    event = new_event(
        "MessageSubmitted",
        tenant=tenant,
        subject=conv,
        payload=MessageSubmitted(
            turn_id=uuid.uuid4().hex[:8], role="user", content="hello there", model="slm-1", tokens=3
        ),
        producer="gateway",
        occurred_at_micros=time.time_ns() // 1000,
    )
    asyncio.run(_produce(settings, CONVERSATION_EVENTS, [(conv.encode(), codec.encode(event))]))
    return event.event_id


def _decision(settings: Settings, event_id: str, worker: Process) -> PolicyDecision:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        for raw in asyncio.run(read_all(settings, settings.topic(POLICY_DECISIONS))):
            payload = codec.decode(raw.value or b"").payload
            if isinstance(payload, PolicyDecision) and payload.input_event_id == event_id:
                return payload
        time.sleep(0.5)
    raise AssertionError(f"no decision for {event_id}:\n{worker.log_tail()}")


def _refused_metric(metrics_url: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith("ledgerflow_policy_packs_refused_total{"):
            reason = line.split('reason="', 1)[1].split('"', 1)[0]
            found[reason] = float(line.rsplit(" ", 1)[1])
    return found


def test_packs_without_a_valid_signature_are_refused_and_a_signed_one_takes_effect(
    settings: Settings, log_dir: Any
) -> None:
    port = free_port()
    worker = start(
        settings,
        "worker",
        "worker",
        log_dir=log_dir,
        extra_env={"LEDGERFLOW_WORKER_METRICS": f"127.0.0.1:{port}"},
    )
    try:
        tenant = f"sg-{uuid.uuid4().hex[:8]}"
        keys = ensure_policy_keys(settings.state_dir)
        first = asyncio.run(publish_pack(settings, _document(tenant, deny_hello=False), producer_name="test"))
        assert first.signer_kid == keys.kid
        in_force = _decision(settings, _turn(settings, tenant, "c-1"), worker)
        assert (in_force.rule_pack_version, in_force.signer_kid, in_force.outcome) == (1, keys.kid, "allow")

        hostile = _document(tenant, deny_hello=True)
        mallory = ed25519.Ed25519PrivateKey.generate()
        by_mallory = sign(hostile, private_key=mallory, kid=keys.kid, alg="EdDSA", signed_at=int(time.time()))
        by_stranger = sign(
            hostile, private_key=mallory, kid="mallory", alg="EdDSA", signed_at=int(time.time())
        )
        genuine = sign_with(
            keys, _document(tenant, deny_hello=False)
        )  # a real signature of the pack in force
        records = [
            (tenant.encode(), _record(tenant, 2, hostile, None)),
            (tenant.encode(), _record(tenant, 3, hostile, by_stranger)),
            (tenant.encode(), _record(tenant, 4, hostile, genuine)),  # signature of another document
            (tenant.encode(), _record(tenant, 5, hostile, by_mallory)),  # a trusted kid, the wrong key
        ]
        asyncio.run(_produce(settings, POLICY_RULES, records))

        deadline = time.monotonic() + TIMEOUT_S
        letters: list[Any] = []
        while time.monotonic() < deadline and len(letters) < len(records):
            letters = [x.letter for x in asyncio.run(read_dead_letters(settings, POLICY_RULES))]
            time.sleep(0.5)
        codes = sorted(letter.reason_code for letter in letters)
        assert codes == ["bad-signature", "hash-mismatch", "unknown-key", "unsigned"], letters
        assert _refused_metric(f"http://127.0.0.1:{port}/metrics") == {
            "bad-signature": 1.0,
            "hash-mismatch": 1.0,
            "unknown-key": 1.0,
            "unsigned": 1.0,
        }
        still = _decision(settings, _turn(settings, tenant, "c-2"), worker)
        assert (still.rule_pack_version, still.outcome, still.signer_kid) == (1, "allow", keys.kid)

        second = asyncio.run(publish_pack(settings, hostile, producer_name="test"))
        taken = _decision(settings, _turn(settings, tenant, "c-3"), worker)
        assert (taken.rule_pack_version, taken.outcome, taken.signer_kid) == (
            second.version,
            "deny",
            keys.kid,
        )
        assert taken.constitution_hash == second.constitution_hash

        report = asyncio.run(run_audit(settings, projections=False, progress=False, grace_s=0))
        assert report.clean, report.findings[:5]
        assert report.stats["rule packs validly signed"] == 2
        assert report.stats["rule packs refused"] == 4
    finally:
        worker.stop()
