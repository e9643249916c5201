"""A long ``policy.rules`` log does not keep reference data from starting.

The reviewer's log: one tenant's admin published 81 valid signed packs of about 213 KB (100
rules of 190 keywords). Every fresh edge then failed its lifespan and every worker retried its
first batch forever: ``ReferenceData.start`` checked every pack on the event loop within a
fixed 10 s in all, and each failed start left its two consumers open. Now the read is bounded
by a lack of progress only, the checks run in a worker thread, and a failed start stops the
readers it opened. Each test fails on the old reader (a TimeoutError after 10 s; two consumers
left open by a cancelled start)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
import warnings
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ledgerflow.auth.devkeys import ensure_policy_keys
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.kafka.reference import ReferenceData, builtin_default_pack
from ledgerflow.policy import check_rule_pack
from ledgerflow.rulepacks import sign_with
from ledgerflow.topics import POLICY_RULES
from tests.support.processes import free_port, start, wait_http_ready

PACKS = 81  # the reviewer's count: about 11 s of checks on an idle 2-core machine
RULES, KEYWORDS = 100, 190


def _big_document(tenant: str) -> dict[str, Any]:
    """A valid pack of ``RULES`` rules of ``KEYWORDS`` keywords each (~240 KB as a record)."""
    doc = builtin_default_pack().document()
    doc.pop("version", None)
    doc["tenant"] = tenant
    doc["rules"] = [
        {
            "id": f"r{i}",
            "action": "review",
            "weight": 1,
            "when": {"keywords": [f"kw{i}x{j}yy" for j in range(KEYWORDS)]},
        }
        for i in range(RULES)
    ]
    return doc


def _records(settings: Settings, tenant: str) -> list[bytes]:
    """Versions 1 to ``PACKS`` of one big pack, each validly signed by the dev policy key (a
    signature covers the document without its version, so one signature serves them all)."""
    document = _big_document(tenant)
    signature = sign_with(ensure_policy_keys(settings.state_dir), document)
    checked = check_rule_pack(document)
    records = []
    for version in range(1, PACKS + 1):
        pack = checked.with_version(version)
        payload = RulePackPublished(version, pack.constitution_hash, pack.canonical.decode(), signature)
        event = new_event(
            "RulePackPublished",
            tenant=tenant,
            subject=tenant,
            payload=payload,
            producer="edge:admin",
            occurred_at_micros=time.time_ns() // 1000,
        )
        records.append(codec.encode(event))
    return records


async def _publish(settings: Settings, tenant: str, records: list[bytes]) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=1 << 20, linger_ms=5
    )
    await producer.start()
    try:
        sent = [
            await producer.send(settings.topic(POLICY_RULES), value, key=tenant.encode()) for value in records
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


def _open_consumers() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, AIOKafkaConsumer) and not o._closed)


async def _start_and_watch_the_loop(reference: ReferenceData) -> tuple[float, float]:
    """``start()``: how long it took, and the longest the event loop went unanswered meanwhile."""
    longest = 0.0

    async def tick() -> None:
        nonlocal longest
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            longest, last = max(longest, now - last), now

    ticker = asyncio.create_task(tick())
    began = time.perf_counter()
    try:
        await reference.start()
    finally:
        ticker.cancel()
    return time.perf_counter() - began, longest


def test_a_long_log_of_big_signed_packs_is_read_to_its_end_and_the_edge_starts(
    settings: Settings, log_dir: Any, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = "bigpacks"
    records = _records(settings, tenant)
    asyncio.run(_publish(settings, tenant, records))
    megabytes = sum(len(r) for r in records) / 1e6
    http = f"127.0.0.1:{free_port()}"
    edge = start(settings.with_overrides(http=http), "edge", "serve", log_dir=log_dir)  # reads meanwhile
    try:

        async def scenario() -> tuple[float, float, int, int, int]:
            reference = ReferenceData(settings)
            try:
                took, longest = await _start_and_watch_the_loop(reference)
                history = reference.pack_history
                return (
                    took,
                    longest,
                    reference.pack_for(tenant).version or 0,
                    len(history),
                    history.compiled(),
                )
            finally:
                await reference.stop()

        took, longest, version, versions, compiled = asyncio.run(scenario())
        print(
            f"start() read {PACKS} packs ({megabytes:.1f} MB) in {took:.1f} s; the event loop's "
            f"longest pause {longest * 1000:.0f} ms; {compiled} of {versions} versions held compiled"
        )
        assert (version, versions) == (PACKS, PACKS)  # applied in log order: the last version is in force
        assert compiled < PACKS  # superseded versions are kept as text, not compiled
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("reference data: ")]
        assert any("catching up: " in line and "% of the log's end" in line for line in lines), lines
        assert lines[-1].startswith("reference data: caught up: 81 records"), lines
        wait_http_ready(edge, f"http://{http}", timeout=120)  # its lifespan read the same log
    finally:
        edge.stop()


def test_a_start_that_fails_leaves_no_consumer_open_and_a_retried_start_reads_the_log(
    settings: Settings,
) -> None:
    tenant = "bigpacks"
    asyncio.run(_publish(settings, tenant, _records(settings, tenant)[:8]))

    async def failed_start(reference: ReferenceData) -> None:
        """A start that fails while it reads (cancelled as soon as it has opened its consumers)."""
        before = _open_consumers()
        starting = asyncio.create_task(reference.start())
        while _open_consumers() - before < 2 and not starting.done():
            await asyncio.sleep(0.005)
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting

    async def scenario() -> tuple[int, int, int, int]:
        before = _open_consumers()
        reference = ReferenceData(settings)
        try:
            for _ in range(2):  # the policy agent retries a failed start on its next batch
                await failed_start(reference)
            after_failures = _open_consumers() - before
            await reference.start()
            running = _open_consumers() - before
            version = reference.pack_for(tenant).version or 0
        finally:
            await reference.stop()
        return after_failures, running, _open_consumers() - before, version

    with warnings.catch_warnings(record=True) as caught:  # a dropped open consumer warns when collected
        warnings.simplefilter("always", ResourceWarning)
        after_failures, running, stopped, version = asyncio.run(scenario())
        gc.collect()
    unclosed = [str(w.message) for w in caught if "Unclosed AIOKafkaConsumer" in str(w.message)]
    assert (len(unclosed), after_failures, running, stopped) == (0, 0, 2, 0)
    assert version == 8
