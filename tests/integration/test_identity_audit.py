"""The identity audit trail against the real broker: key creations and rotations, dev-token
mints (never the token) and an edge's per-window refused authentications land on
``identity.audit``, chained; the audit verifies the chains and locates a forged record."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
from aiokafka import AIOKafkaProducer

from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import AuthRefusals, SigningKeyChanged, TokenMinted
from ledgerflow.identity.cli import ensure_recorded, mint_recorded, rotate_recorded
from ledgerflow.identity.records import issuer_chain
from ledgerflow.identity.trail import ChainWriter
from ledgerflow.kafka.logs import read_all
from ledgerflow.netutil import free_port, wait_http_ready
from ledgerflow.topics import IDENTITY_AUDIT
from tests.support.processes import start

TIMEOUT_S = 60.0


def _trail(settings: Settings) -> list[tuple[int, bytes, Event]]:
    records = asyncio.run(read_all(settings, settings.topic(IDENTITY_AUDIT)))
    return [(r.offset, r.value or b"", codec.decode(r.value or b"")) for r in records]


def _refusals(settings: Settings) -> list[AuthRefusals]:
    return [e.payload for _, _, e in _trail(settings) if isinstance(e.payload, AuthRefusals)]


def test_key_changes_mints_and_refusals_are_chained_and_a_forgery_is_located(
    settings: Settings, tmp_path: Path, log_dir: Path
) -> None:
    issuer = settings.with_overrides(state_dir=tmp_path / "issuer")
    ensure_recorded(issuer)
    rotate_recorded(issuer, "policy", 30)
    token = mint_recorded(issuer, sub="ops-1", tenant="acme", roles="subscriber,admin", ttl_seconds=600)
    trail = _trail(settings)
    keys = [e.payload for _, _, e in trail if isinstance(e.payload, SigningKeyChanged)]
    assert [(k.action, k.purpose) for k in keys] == [
        ("created", "token"),
        ("created", "policy"),
        ("retired", "policy"),
        ("rotated", "policy"),
    ]
    retired, rotated = keys[2], keys[3]
    assert rotated.previous_kid == retired.kid and retired.not_after is not None
    assert all(k.thumbprint == k.kid and k.not_before > 0 for k in keys)  # dev kids are RFC 7638 thumbprints
    mints = [e for _, _, e in trail if isinstance(e.payload, TokenMinted)]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert len(mints) == 1 and mints[0].tenant == "acme"
    assert (mints[0].payload.jti, mints[0].payload.roles) == (claims["jti"], ("admin", "subscriber"))
    assert all(token.split(".")[2].encode() not in value for _, value, _ in trail)  # never the token
    assert [e.sequence for _, _, e in trail] == [1, 2, 3, 4, 5]
    assert {e.subject for _, _, e in trail} == {issuer_chain(settings.issuer)}

    http = f"127.0.0.1:{free_port()}"
    edge = start(
        settings.with_overrides(http=http),
        "edge",
        "serve",
        log_dir=log_dir,
        extra_env={"LEDGERFLOW_AUTH_REFUSALS_WINDOW_S": "1"},
    )
    try:
        wait_http_ready(edge, f"http://{http}")
        forged = jwt.encode(
            {"tenant": "victim", "sub": "x"}, "not-the-key-but-long-enough-32-bytes!", "HS256"
        )
        attempts: list[dict[str, Any]] = [
            {},
            {"Authorization": "Bearer garbage"},
            {"Authorization": f"Bearer {forged}"},
            {"Authorization": f"Bearer {forged}"},
        ]
        for headers in attempts:
            assert httpx.get(f"http://{http}/v1/usage", headers=headers, timeout=10).status_code == 401
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline and sum(c.count for r in _refusals(settings) for c in r.counts) < 4:
            time.sleep(0.5)
    finally:
        edge.stop()
    counted: dict[tuple[str, str], int] = {}
    for r in _refusals(settings):
        for c in r.counts:
            counted[(c.reason, c.tenant)] = counted.get((c.reason, c.tenant), 0) + c.count
    assert sum(counted.values()) == 4, counted
    assert counted[("missing", "-")] == 1 and counted[("malformed", "-")] == 1
    assert sum(n for (_, tenant), n in counted.items() if tenant == "victim") == 2
    assert all(forged.split(".")[2].encode() not in value for _, value, _ in _trail(settings))

    clean = asyncio.run(run_audit(settings, projections=False, progress=False, grace_s=0))
    assert clean.clean, clean.findings[:5]
    assert clean.stats["identity.audit records"] == len(_trail(settings))

    # Someone with write access appends a mint to the issuer's chain, without the real head.
    chain_id = issuer_chain(settings.issuer)
    fake = ChainWriter(chain_id, ChainHead(chain_id, 5, "f" * 64))
    record = fake.link("acme", TokenMinted("jti-x", "mallory", ("admin",), "k", 1, 2), time.time_ns() // 1000)

    async def produce() -> int:
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            meta = await producer.send_and_wait(
                settings.topic(IDENTITY_AUDIT), codec.encode(record), key=chain_id.encode()
            )
            return int(meta.offset)
        finally:
            await producer.stop()

    offset = asyncio.run(produce())
    report = asyncio.run(run_audit(settings, projections=False, progress=False, grace_s=0))
    located = [(f.kind, f.topic, f.partition, f.offset) for f in report.findings]
    assert not report.clean
    where = (settings.topic(IDENTITY_AUDIT), 0, offset)
    assert any(kind.startswith("chain.") and (t, p, o) == where for kind, t, p, o in located), located
