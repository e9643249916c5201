"""Poison on ``identity.audit``, written straight to Kafka into the dev issuer's chain, on the
real broker: nothing that appends to the trail crashes (a token minted after the poison links
after the last good record, not after the poison), and ``ledgerflow audit`` names every poison
record at its offset and nothing else.

Only ledgerflow writes ``identity.audit``, so a record there that does not decode, is of
another type, or links nowhere is a finding of the audit (no agent consumes the topic, so
there is nothing to dead-letter).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiokafka import AIOKafkaProducer

from ledgerflow.audit.cli import run_audit
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import MAGIC
from ledgerflow.contracts.payloads import TokenMinted
from ledgerflow.identity.cli import ensure_recorded, mint_recorded
from ledgerflow.identity.records import issuer_chain
from ledgerflow.kafka.logs import read_all
from ledgerflow.topics import IDENTITY_AUDIT
from tests.integration.fuzzkit import BROKER_ACCEPTED_RECORD_BYTES, turn_payload, wire_record

CUT = 9  # bytes a truncated copy loses


def minted(chain: str, sub: str, sequence: int | None) -> bytes:
    """A TokenMinted written by hand into ``chain``: its chain fields are whatever is given.

    Each case gets a chain of its own: after a break the audit stops walking a chain, so poison
    in one chain would hide the next."""
    payload = {"jti": "jti-x", "sub": sub, "roles": ["admin"], "kid": "k", "issued_at": 1, "expires_at": 2}
    link = {"sequence": sequence, "prev_hash": None if sequence is None else "0" * 64, "hash": "f" * 64}
    envelope = {"tenant": "acme", "subject": chain, "producer": "ledgerflow-identity"}
    return wire_record("TokenMinted", envelope | link, payload)


def oversized(chain: str, size: int) -> bytes:
    """A valid, unchained TokenMinted of exactly ``size`` bytes (its ``sub`` padded)."""
    pad = size - len(minted(chain, "", None))
    for _ in range(8):  # the string's varint length grows with it: converge
        value = minted(chain, "s" * pad, None)
        if len(value) == size:
            return value
        pad += size - len(value)
    raise AssertionError(f"could not build a {size}-byte record")


async def produce(settings: Settings, key: bytes, values: list[bytes | None]) -> list[int]:
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", max_request_size=2 * 1024 * 1024
    )
    await producer.start()
    try:
        offsets = []
        for value in values:  # one at a time: the offsets say which is which
            meta = await producer.send_and_wait(settings.topic(IDENTITY_AUDIT), value, key=key)
            offsets.append(int(meta.offset))
        return offsets
    finally:
        await producer.stop()


def test_poison_on_the_identity_trail_is_named_by_the_audit_and_appending_goes_on(
    settings: Settings, tmp_path: Path
) -> None:
    issuer = settings.with_overrides(state_dir=tmp_path / "issuer")
    ensure_recorded(issuer)  # the token and the policy key: sequences 1 and 2
    chain_id = issuer_chain(settings.issuer)
    good = codec.encode(
        codec.decode(asyncio.run(read_all(settings, settings.topic(IDENTITY_AUDIT)))[-1].value or b"")
    )
    poison: dict[str, bytes | None] = {
        "undecodable bytes": b"\x00\xffnot avro",
        "an unknown fingerprint": MAGIC + b"\x01" * 8 + b"\x02",
        "a good record cut short": good[:-CUT],
        "a good record with trailing bytes": good + b"\x00",
        "a turn (wrong type for the topic)": wire_record("MessageSubmitted", {}, turn_payload("t1")),
        "a null value": None,
        "a mint starting its chain at sequence 3": minted("issuer:poison-1", "mallory", 3),
        "an unchained mint": minted("issuer:poison-2", "mallory", None),
        "the broker's largest record, valid but unchained": oversized(
            "issuer:poison-3", BROKER_ACCEPTED_RECORD_BYTES
        ),
        "the broker's largest garbage": MAGIC + b"\xee" * (BROKER_ACCEPTED_RECORD_BYTES - 2),
    }
    offsets = dict(
        zip(poison, asyncio.run(produce(settings, chain_id.encode(), list(poison.values()))), strict=True)
    )

    token = mint_recorded(issuer, sub="ops-1", tenant="acme", roles="subscriber", ttl_seconds=600)
    assert token
    records = asyncio.run(read_all(settings, settings.topic(IDENTITY_AUDIT)))
    last = codec.decode(records[-1].value or b"")
    assert isinstance(last.payload, TokenMinted) and last.payload.sub == "ops-1"
    assert last.sequence == 3, "the mint links after the last good record, whatever was written since"

    report = asyncio.run(run_audit(settings, projections=False, progress=False, grace_s=0))
    topic = settings.topic(IDENTITY_AUDIT)
    named = {f.offset: f.kind for f in report.findings if f.topic == topic}
    missing = {label: at for label, at in offsets.items() if at not in named}
    assert not missing, f"poison the audit did not name: {missing}; findings: {report.findings}"
    assert set(named) == set(offsets.values()), f"findings beyond the poison: {report.findings}"
    assert all(f.topic == topic for f in report.findings), report.findings
