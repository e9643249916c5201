"""Training mode and usage windows on the real stack."""

from __future__ import annotations

import asyncio
import concurrent.futures
import random
import time
import uuid
from collections import Counter

import httpx
import pytest

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import Located, verify
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import DisableTraining, EnableTraining, MessageSubmitted
from ledgerflow.kafka.logs import read_all
from ledgerflow.timefmt import rfc3339
from ledgerflow.traffic import Publisher
from ledgerflow.training import check_transition, evolve, initial_state
from ledgerflow.training.wire import event_of
from tests.support.processes import Process, start


def _audit(settings: Settings) -> list:
    return asyncio.run(read_all(settings, settings.topic("training.audit")))


def _post(edge: str, token: str, path: str, body: dict) -> httpx.Response:
    # ?wait=20: the worker may still be joining its group on a loaded machine
    return httpx.post(
        f"{edge}{path}",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
        params={"wait": 20},
        timeout=30,
    )


def test_concurrent_enables_with_one_expected_version_accept_exactly_one(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    admin = tokens("acme", "admin")
    body = {"reason": "nightly fine-tune", "ttl_seconds": 600, "expected_version": 0}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _post(edge, admin, "/v1/training/enable", body), range(2)))
    codes = sorted(a.status_code for a in answers)
    assert codes == [200, 409], [a.text for a in answers]
    rejected = next(a for a in answers if a.status_code == 409)
    assert rejected.headers["content-type"].startswith("application/problem+json")
    assert "version" in rejected.json()["detail"] or "already" in rejected.json()["detail"]
    deadline = time.monotonic() + 30
    while True:  # the status read model is projected asynchronously
        status = httpx.get(f"{edge}/v1/training/status", headers={"Authorization": f"Bearer {admin}"}).json()
        if status["version"] >= 1 or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert (status["state"], status["version"], status["reason"]) == ("enabled", 1, "nightly fine-tune")


def test_non_admin_is_refused_and_nothing_is_written(settings: Settings, edge: str, tokens) -> None:
    resp = _post(
        edge, tokens("acme", "producer,subscriber"), "/v1/training/enable", {"reason": "x", "ttl_seconds": 60}
    )
    assert resp.status_code == 403
    assert asyncio.run(read_all(settings, settings.topic("training.commands"))) == []


@pytest.mark.parametrize(
    ("query", "body", "why"),
    [
        ({"wait": "abc"}, {"reason": "x", "ttl_seconds": 60}, "wait"),
        ({"wait": "99"}, {"reason": "x"}, "wait"),
        ({}, {"reason": "x", "ttl_seconds": -5}, "ttl_seconds"),
        ({}, {"reason": "x", "ttl_seconds": 0}, "ttl_seconds"),
        # the agent's limits (training/aggregate.py), refused before a round trip through Kafka
        ({}, {"reason": "x", "ttl_seconds": 7 * 24 * 3600 + 1}, "ttl_seconds"),
        ({}, {"reason": "y" * 200_000}, "reason: 200000 characters; at most 500"),
        ({}, {"reason": "y" * 501, "ttl_seconds": 60}, "reason"),
    ],
)
def test_a_bad_command_is_refused_before_anything_is_written(
    settings: Settings, edge: str, tokens, query: dict, body: dict, why: str
) -> None:
    """A 422 means nothing happened: a bad ?wait= used to be refused after the command was
    published, so a client correcting it and retrying published it twice."""
    resp = httpx.post(
        f"{edge}/v1/training/enable",
        json=body,
        headers={"Authorization": f"Bearer {tokens('acme', 'admin')}"},
        params=query,
        timeout=30,
    )
    assert resp.status_code == 422 and why in resp.json()["detail"], resp.text
    assert asyncio.run(read_all(settings, settings.topic("training.commands"))) == []


def test_ttl_expiry_is_appended_within_a_second_of_the_deadline(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    admin = tokens("acme", "admin")
    enabled = _post(edge, admin, "/v1/training/enable", {"reason": "short run", "ttl_seconds": 2})
    assert enabled.status_code == 200, enabled.text
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        records = [codec.decode(r.value) for r in _audit(settings)]
        expired = [r for r in records if r.type == "TrainingExpired"]
        if expired:
            break
        time.sleep(0.3)
    else:
        raise AssertionError(f"no TrainingExpired within 15 s\n{worker.log_tail()}")
    late_by = (expired[0].occurred_at - expired[0].payload.expires_at) / 1e6
    assert 0 <= late_by < 1.0, f"expiry appended {late_by:.2f} s after the deadline"
    status = httpx.get(f"{edge}/v1/training/status", headers={"Authorization": f"Bearer {admin}"}).json()
    assert status["state"] == "disabled" and status["version"] == 2


@pytest.mark.timeout(600)
def test_sigkill_of_the_training_agent_neither_loses_nor_repeats_audit_records(
    settings: Settings, log_dir
) -> None:
    rng = random.Random(5)
    tenants = [f"tenant-{i}" for i in range(6)]
    commands = []
    for n in range(300):
        tenant = rng.choice(tenants)
        payload = (
            EnableTraining(f"cmd-{n}", "root", "run", 3600, None)
            if rng.random() < 0.5
            else DisableTraining(f"cmd-{n}", "root", "stop", None, None)
        )
        commands.append(
            new_event(
                type(payload).__name__,
                tenant=tenant,
                subject=tenant,
                payload=payload,
                producer="test",
                occurred_at_micros=time.time_ns() // 1000,
            )
        )

    async def feed() -> None:
        async with Publisher(settings) as pub:
            for cmd in commands:
                await pub._producer.send(
                    settings.topic("training.commands"), codec.encode(cmd), key=cmd.subject.encode()
                )
                await asyncio.sleep(0.02)
            await pub.flush()

    worker = start(settings, "worker", "worker", "--agents", "training", log_dir=log_dir)
    try:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            fed = pool.submit(lambda: asyncio.run(feed()))
            for _ in range(2):
                time.sleep(rng.uniform(2.0, 4.0))
                worker.kill()
                worker = start(settings, "worker", "worker", "--agents", "training", log_dir=log_dir)
            fed.result()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            raw = _audit(settings)
            answered = Counter(codec.decode(r.value).payload.command_id for r in raw)
            if len([c for c in answered if c]) >= len(commands):
                break
            time.sleep(1.0)
    finally:
        worker.stop()
    records = [(r, codec.decode(r.value)) for r in raw]
    answered = Counter(rec.payload.command_id for _, rec in records if rec.payload.command_id)
    assert set(answered) == {c.payload.command_id for c in commands}, "a command lost its audit record"
    assert max(answered.values()) == 1, f"repeated: {[c for c, n in answered.items() if n > 1][:5]}"
    assert (
        verify([Located(r.topic, r.partition, r.offset, rec.subject, rec.to_json()) for r, rec in records])
        == []
    )
    states = {t: initial_state(t) for t in tenants}
    for _, rec in sorted(records, key=lambda x: (x[0].partition, x[0].offset)):
        event = event_of(rec)
        problem = check_transition(states[rec.tenant], event)
        assert problem is None, problem
        states[rec.tenant] = evolve(states[rec.tenant], event)


def test_usage_windows_sum_their_inputs_and_late_events_become_corrections(
    settings: Settings, log_dir, edge: str, tokens
) -> None:
    env = {"LEDGERFLOW_USAGE_WINDOW_S": "1", "LEDGERFLOW_USAGE_LATENESS_S": "0.5"}
    worker = start(
        settings, "worker", "worker", "--agents", "usage,projector", log_dir=log_dir, extra_env=env
    )
    conv, tenant, model = f"conv-{uuid.uuid4().hex[:6]}", "acme", "slm-1"
    base = (time.time_ns() // 1000 // 1_000_000 - 30) * 1_000_000  # whole second, 30 s ago
    sent: Counter[int] = Counter()

    def turn(at: int, tokens_: int) -> object:
        sent[at // 1_000_000 * 1_000_000] += tokens_
        return new_event(
            "MessageSubmitted",
            tenant=tenant,
            subject=conv,
            producer="test",
            occurred_at_micros=at,
            payload=MessageSubmitted(f"t{at}", "assistant", "ok", model, tokens_),
        )

    events = [turn(base + w * 1_000_000 + k * 100_000, 10 * (w + 1) + k) for w in range(6) for k in range(3)]
    late = turn(base + 1 * 1_000_000 + 500_000, 7)  # window 1 closed long before this arrives

    async def feed() -> None:
        async with Publisher(settings) as pub:
            for e in events:
                await pub.send(e)
            await pub.flush()
            # Late for the worker, not for its first batch: a partition's first batch is re-folded
            # with everything on the log then (the late turn would be in window 1's first totals).
            give_up = time.monotonic() + 60
            windows_topic = settings.topic("usage.windows")
            while not await read_all(settings, windows_topic) and time.monotonic() < give_up:
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)
            await pub.send(late)
            await pub.flush()

    try:
        asyncio.run(feed())
        deadline = time.monotonic() + 60
        windows: dict[int, object] = {}
        while time.monotonic() < deadline:
            windows = {}
            for raw in asyncio.run(read_all(settings, settings.topic("usage.windows"))):
                rec = codec.decode(raw.value)
                prior = windows.get(rec.payload.window_start)
                if prior is None or rec.payload.revision > prior.payload.revision:
                    windows[rec.payload.window_start] = rec
            if len(windows) >= 6 and windows[base + 1_000_000].payload.correction:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"windows not emitted: {sorted(windows)}\n{worker.log_tail()}")
        assert {w: rec.payload.tokens for w, rec in windows.items()} == dict(sent)
        corrected = windows[base + 1_000_000].payload
        assert (corrected.correction, corrected.revision, corrected.events) == (True, 1, 4)
        token = tokens("acme", "subscriber")
        expected_history = [sent[w] for w in sorted(sent)]
        deadline = time.monotonic() + 30
        while True:  # the projector may still be applying the last windows
            resp = httpx.get(
                f"{edge}/v1/forecast",
                params={"model": model, "horizon": 3},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            body = resp.json()
            if resp.status_code == 200 and [h["tokens"] for h in body["history"]] == expected_history:
                break
            assert time.monotonic() < deadline, f"forecast history never matched: {resp.text}"
            time.sleep(0.5)
        assert len(body["forecast"]) == 3
        assert all(p["lower"] <= p["expected"] <= p["upper"] for p in body["forecast"])
        assert [h["window_start"] for h in body["history"]] == [rfc3339(w) for w in sorted(sent)]  # not µs
        ordered = sorted(sent)
        assert body["forecast"][0]["window_start"] == rfc3339(ordered[-1] + ordered[-1] - ordered[-2])
    finally:
        worker.stop()
