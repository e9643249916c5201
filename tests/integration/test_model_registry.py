"""The model registry on the real stack: register, conflict, disable; a model rule denies turns
to unregistered or disabled models; the audit re-derives those decisions; cost in the forecast."""

from __future__ import annotations

import asyncio
import time
import uuid

import httpx

from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import MessageSubmitted, PolicyDecision
from ledgerflow.kafka.logs import read_all
from ledgerflow.traffic import Publisher
from tests.support.processes import Process, start

GATE = {
    "tenant": "acme",
    "rules": [
        {"id": "unregistered-model", "when": {"model_unavailable": True}, "action": "deny", "weight": 1}
    ],
}


def _post(edge: str, token: str, path: str, body: dict) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(f"{edge}{path}", json=body, headers=headers, params={"wait": 20}, timeout=30)


def _step(edge: str, token: str, model: str) -> dict:
    body = {"conversation_id": f"c-{uuid.uuid4().hex[:8]}", "content": "hello", "model": model}
    resp = _post(edge, token, "/v1/conversation/step", body)
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_register_disable_and_the_policy_denies_unavailable_models(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    admin, producer = tokens("acme", "admin"), tokens("acme", "producer")
    slm = {"model": "slm-1", "provider": "local", "context_window": 8192, "input_price_per_1k": 0.5}
    registered = _post(edge, admin, "/v1/models", {**slm, "expected_version": 0})
    assert registered.status_code == 200, registered.text
    assert (registered.json()["outcome"], registered.json()["version"]) == ("ModelRegistered", 1)
    stale = _post(edge, admin, "/v1/models", {**slm, "model": "big", "expected_version": 0})
    assert stale.status_code == 409 and "version_conflict" in stale.json()["detail"], stale.text
    assert _post(edge, producer, "/v1/models", slm).status_code == 403
    unknown = _post(edge, admin, "/v1/models/disable", {"model": "never-registered"})
    assert unknown.status_code == 409 and "unknown_model" in unknown.json()["detail"]
    listed = httpx.get(f"{edge}/v1/models", headers={"Authorization": f"Bearer {producer}"}).json()
    assert listed["version"] == 1 and listed["providers"] == [{"provider": "local", "models": ["slm-1"]}]
    assert listed["models"][0]["input_price_per_1k"] == 0.5 and listed["models"][0]["enabled"] is True

    assert httpx.put(
        f"{edge}/v1/policy/rules", json=GATE, headers={"Authorization": f"Bearer {admin}"}, timeout=30
    ).status_code in (200, 201)
    deadline = time.monotonic() + 30
    while (first := _step(edge, producer, "slm-1"))["outcome"] != "allow":  # the pack may take a moment
        assert time.monotonic() < deadline, first
    assert _step(edge, producer, "gpt-x")["outcome"] == "deny"
    disabled = _post(edge, admin, "/v1/models/disable", {"model": "slm-1", "expected_version": 1})
    assert (disabled.status_code, disabled.json()["version"]) == (200, 2), disabled.text
    denied = _step(edge, producer, "slm-1")
    assert (denied["outcome"], denied["matched_rules"]) == ("deny", ["unregistered-model"])
    again = _post(edge, admin, "/v1/models/disable", {"model": "slm-1"})
    assert again.status_code == 409 and "no_change" in again.json()["detail"]

    decisions = [
        codec.decode(r.value) for r in asyncio.run(read_all(settings, settings.topic("policy.decisions")))
    ]
    versions = sorted(
        {d.payload.models_version for d in decisions if isinstance(d.payload, PolicyDecision)} - {None}
    )
    assert versions == [1, 2], versions
    report = asyncio.run(run_audit(settings, projections=False, progress=False))
    assert report.clean, report.findings
    assert report.stats.get("model registry records") == 5  # 2 accepted, 3 refused


def test_forecast_reports_cost_next_to_tokens(settings: Settings, log_dir, edge: str, tokens) -> None:
    env = {"LEDGERFLOW_USAGE_WINDOW_S": "1", "LEDGERFLOW_USAGE_LATENESS_S": "0.5"}
    worker = start(
        settings, "worker", "worker", "--agents", "usage,projector,models", log_dir=log_dir, extra_env=env
    )
    try:
        admin = tokens("acme", "admin")
        price = {"model": "slm-1", "provider": "local", "context_window": 4096}
        resp = _post(
            edge, admin, "/v1/models", {**price, "input_price_per_1k": 1.0, "output_price_per_1k": 3.0}
        )
        assert resp.status_code == 200, resp.text
        base = (time.time_ns() // 1000 // 1_000_000 - 30) * 1_000_000
        turns = [
            new_event(
                "MessageSubmitted",
                tenant="acme",
                subject="conv-cost",
                producer="test",
                occurred_at_micros=base + w * 1_000_000,
                payload=MessageSubmitted(f"t{w}", "assistant", "ok", "slm-1", 1000 * (w + 1)),
            )
            for w in range(5)
        ]

        async def feed() -> None:
            async with Publisher(settings) as pub:
                for e in turns:
                    await pub.send(e)
                await pub.flush()

        asyncio.run(feed())
        deadline = time.monotonic() + 60
        while True:
            body = httpx.get(
                f"{edge}/v1/forecast",
                params={"model": "slm-1", "horizon": 2},
                headers={"Authorization": f"Bearer {admin}"},
                timeout=10,
            ).json()
            if len(body.get("history", [])) >= 4:
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.5)
        assert body["prices"] == {"input_per_1k": 1.0, "output_per_1k": 3.0}
        first = body["history"][0]
        assert first["tokens"] == 1000 and first["cost"] == {"low": 1.0, "high": 3.0}
        for point in body["forecast"]:
            assert point["cost"]["low"] * 3 == point["cost"]["high"] or point["expected"] <= 0
    finally:
        worker.stop()


def test_a_hostile_model_name_or_wait_is_refused_before_anything_is_published(
    settings: Settings, edge: str, tokens
) -> None:
    """A model id of 262,000 DEL characters fit the body limit, and its rejection record (which
    quoted it several times) went past Kafka's record limit: the agent retried it forever. A bad
    ?wait= was refused only after publishing. A name registered with leading or trailing spaces
    looked the same as another model everywhere. All are a 422 now, and nothing is written."""
    admin = tokens("acme", "admin")
    headers = {"Authorization": f"Bearer {admin}"}
    for body, params in (
        ({"model": "\x7f" * 262_000}, {"wait": 1}),
        ({"model": "m" * 257}, {"wait": 1}),
        ({"model": "slm-9"}, {"wait": "abc"}),
    ):
        resp = httpx.post(f"{edge}/v1/models/disable", json=body, headers=headers, params=params, timeout=30)
        assert resp.status_code == 422, resp.text[:300]
    for name in ("slm-1 ", " slm-1", "slm-1\t"):  # would look like "slm-1" on every page
        register = {"model": name, "provider": "acme-ai", "context_window": 8192}
        resp = httpx.post(f"{edge}/v1/models", json=register, headers=headers, params={"wait": 1}, timeout=30)
        assert resp.status_code == 422, (name, resp.text[:300])
    assert asyncio.run(read_all(settings, settings.topic("models.commands"))) == []
