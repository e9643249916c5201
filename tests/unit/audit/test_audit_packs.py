"""The audit's pack-signature check (audit/packs.py): refused packs are listed, and a decision that
names a pack no valid signature admitted, or records another signer, is a finding."""

from __future__ import annotations

import time

from ledgerflow.audit.packs import PackSignatures
from ledgerflow.audit.report import Report
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import PolicyDecision, RulePackPublished
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.policy import RulePack
from ledgerflow.projections.ops import Position

AT = Position("policy.decisions", 0, 7)
PACK = builtin_default_pack().with_version(3).signed_by("k1")


def _event(payload: PolicyDecision | RulePackPublished, subject: str) -> Event:
    at = time.time_ns() // 1000
    return new_event(
        payload.TYPE, tenant="acme", subject=subject, payload=payload, producer="p", occurred_at_micros=at
    )


def _decision(version: int, constitution: str, signer: str | None) -> Event:
    payload = PolicyDecision("e1", None, "c1", "allow", 0.0, (), version, constitution, 0, False, (), signer)
    return _event(payload, "c1")


def _published(version: int) -> Event:
    return _event(RulePackPublished(version, PACK.constitution_hash, PACK.canonical_json().decode()), "acme")


def test_a_decision_under_a_validly_signed_pack_passes() -> None:
    history: dict[tuple[str, int], RulePack] = {("acme", 3): PACK}
    check = PackSignatures()
    check.feed(Position("policy.rules", 0, 1), _published(3), None)
    assert check.decision(AT, _decision(3, PACK.constitution_hash, "k1"), history) is None
    assert check.decision(AT, _decision(0, builtin_default_pack().constitution_hash, None), history) is None


def test_a_decision_under_a_refused_pack_is_located_with_the_refusal() -> None:
    check = PackSignatures()
    check.feed(Position("policy.rules", 0, 4), _published(4), "unsigned: the pack carries no signature")
    finding = check.decision(AT, _decision(4, PACK.constitution_hash, None), {})
    assert finding is not None and finding.kind == "decision.unsigned-pack"
    assert (finding.topic, finding.partition, finding.offset) == ("policy.decisions", 0, 7)
    assert "policy.rules[0]@4: unsigned" in finding.detail
    report = Report()
    check.report(report)
    assert report.stats == {"rule packs validly signed": 0, "rule packs refused": 1}


def test_a_decision_claiming_another_signer_or_constitution_is_a_finding() -> None:
    history: dict[tuple[str, int], RulePack] = {("acme", 3): PACK}
    signer = PackSignatures().decision(AT, _decision(3, PACK.constitution_hash, "k-forged"), history)
    assert signer is not None and signer.kind == "decision.signer"
    other = PackSignatures().decision(AT, _decision(3, "0" * 64, "k1"), history)
    assert other is not None and other.kind == "decision.unsigned-pack"
