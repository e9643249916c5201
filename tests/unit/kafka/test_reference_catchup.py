"""The pure pieces of reading reference data to its end (kafka/reference.py): a catch-up is
bounded by a lack of progress, not by a total time, and reports its progress; a batch of rule
packs is checked off the event loop with only the pack each tenant ends the batch with compiled,
and applying the batch in order gives what applying each record alone gave."""

from __future__ import annotations

from typing import Any

import pytest
from aiokafka import TopicPartition
from cryptography.hazmat.primitives.asymmetric import ed25519

from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.kafka.reference import (
    CatchUp,
    PackHistory,
    admit_records,
    apply_reference_event,
    builtin_default_pack,
)
from ledgerflow.policy import RulePack, check_rule_pack
from ledgerflow.policy.signing import UNSIGNED, PublisherKey, sign
from tests.support.compiles import count_rule_compiles

KEY = ed25519.Ed25519PrivateKey.generate()
T0 = 1_800_000_000
A, B = TopicPartition("policy.rules", 0), TopicPartition("training.audit", 0)
RULES = len(builtin_default_pack().rules)


def lookup(kid: str) -> PublisherKey | None:
    return PublisherKey("k1", KEY.public_key(), "EdDSA") if kid == "k1" else None


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    return count_rule_compiles(monkeypatch)


def _doc(tenant: str, description: str = "reviewed", pattern: str | None = None) -> dict[str, Any]:
    doc = builtin_default_pack().document()
    doc.pop("version", None)
    doc = {**doc, "tenant": tenant, "description": description}
    if pattern is not None:
        doc["rules"] = [
            *doc["rules"],
            {"id": "p", "action": "review", "weight": 1, "when": {"patterns": [pattern]}},
        ]
    return doc


def _event(tenant: str, version: int, doc: dict[str, Any], signed: bool = True) -> Event:
    checked = check_rule_pack(doc).with_version(version)
    signature = (
        sign(checked.document(), private_key=KEY, kid="k1", alg="EdDSA", signed_at=T0) if signed else None
    )
    payload = RulePackPublished(version, checked.constitution_hash, checked.canonical.decode(), signature)
    return new_event(
        "RulePackPublished",
        tenant=tenant,
        subject=tenant,
        payload=payload,
        producer="t",
        occurred_at_micros=T0 * 1_000_000,
    )


def _batch(events: list[Event]) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(offset, e.tenant.encode(), codec.encode(e)) for offset, e in enumerate(events)]


def _fold(events: list[Event], batched: bool) -> tuple[dict[str, RulePack], PackHistory, list[str | None]]:
    packs: dict[str, RulePack] = {}
    history = PackHistory()
    found = admit_records(_batch(events), lookup) if batched else {}
    reasons = [
        apply_reference_event(e, packs, history, {}, lookup, found.get(offset))
        for offset, e in enumerate(events)
    ]
    return packs, history, reasons


def test_a_catch_up_fails_only_after_the_stall_bound_without_progress() -> None:
    watch = CatchUp({A: 0, B: 0}, {A: 100, B: 0}, stall_s=10.0, started=0.0, moved=0)
    assert not watch.done({A: 40, B: 0}) and watch.done({A: 100, B: 0})
    for now in range(5, 600, 5):  # a long read that keeps moving never times out
        watch.observe(now, float(now))
        assert not watch.stalled(now + 9.9)
    watch.observe(595, 600.0)  # nothing new applied since 595 s
    assert not watch.stalled(605.0) and watch.stalled(605.1)
    assert "no record checked or applied for 10 s" in watch.stalled_line({A: 40}, 595, 2_000_000)


def test_progress_is_logged_every_few_seconds_with_records_bytes_and_share_of_the_end() -> None:
    watch = CatchUp({A: 20}, {A: 120}, stall_s=10.0, started=100.0, moved=0, every_s=5.0)
    assert [watch.log_due(t) for t in (101.0, 104.9, 105.0, 106.0, 110.0)] == [
        False,
        False,
        True,
        False,
        True,
    ]
    line = watch.line({A: 65}, 45, 10_600_000, 112.0)
    assert line == "catching up: 45 records (10.6 MB) read, 45% of the log's end, 12 s"
    assert watch.line({A: 120}, 100, 0, 112.0).startswith("caught up:")
    assert CatchUp({}, {A: 0}, 10.0, 0.0, 0).percent({}) == 100.0  # nothing to read


def test_only_the_pack_each_tenant_ends_a_batch_with_is_compiled(compiles: list[int]) -> None:
    events = [_event("acme", v, _doc("acme", f"v{v}")) for v in range(1, 6)]
    events += [_event("beta", 2, _doc("beta")), _event("beta", 1, _doc("beta", "older"))]
    compiles.clear()
    checks: list[int] = []  # progress a catch-up sees while the batch is still being checked
    found = admit_records(_batch(events), lookup, lambda: checks.append(1))
    assert len(compiles) == 2 * RULES and len(checks) == len(events)  # acme v5 and beta v2 compiled
    compiled = {o: a.pack is not None for o, a in found.items()}
    assert compiled == {0: False, 1: False, 2: False, 3: False, 4: True, 5: True, 6: False}


def test_a_batch_applied_in_order_gives_what_each_record_alone_gave(compiles: list[int]) -> None:
    events = [
        _event("acme", 1, _doc("acme", "v1")),
        _event("acme", 3, _doc("acme", "v3")),
        _event("acme", 2, _doc("acme", "v2")),  # older than the one in force: history only
        _event("acme", 4, _doc("acme", "v4"), signed=False),  # refused: v3 stays the newest
        _event("acme", 3, _doc("acme", "v3 again")),  # an equal version read later wins, as before
    ]
    one_by_one = _fold(events, batched=False)
    compiles.clear()
    batched = _fold(events, batched=True)
    assert len(compiles) == RULES  # only the v3 read last
    assert batched[0] == one_by_one[0] and batched[0]["acme"].description == "v3 again"
    assert dict(batched[1].items()) == dict(one_by_one[1].items())  # every version, readable
    assert batched[2] == one_by_one[2] and (batched[2][3] or "").startswith(UNSIGNED)
    assert batched[1][("acme", 2)].signer_kid == "k1"


def test_when_the_newest_pack_does_not_compile_the_next_one_is_compiled_and_in_force() -> None:
    events = [_event("acme", 1, _doc("acme", "good")), _event("acme", 2, _doc("acme", "bad", pattern="a*"))]
    packs, history, reasons = _fold(events, batched=True)
    assert reasons[0] is None and (reasons[1] or "").startswith("invalid-rule-pack")
    assert packs["acme"].description == "good" and list(history) == [("acme", 1)]
    alone_packs, alone_history, alone_reasons = _fold(events, batched=False)
    assert (packs, list(history), reasons) == (alone_packs, list(alone_history), alone_reasons)
