"""The workers' and the edge's reference reader never dies on a record: whatever applying one
raises is a refusal with the error's name, and the reader goes on to the next record."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.kafka.reference import ReferenceData


def _pack_record(document: str) -> bytes:
    payload = RulePackPublished(version=1, constitution_hash="0" * 64, document=document)
    event = new_event(
        "RulePackPublished",
        tenant="acme",
        subject="acme",
        payload=payload,
        producer="edge:admin-1",
        occurred_at_micros=1_780_000_000_000_000,
    )
    return codec.encode(event)


def test_a_hostile_pack_is_refused_with_its_reason() -> None:
    settings = Settings(state_dir=Path("/nonexistent"))
    reference = ReferenceData(settings)
    reason = reference._apply_guarded(settings.topic("policy.rules"), b"acme", _pack_record("[" * 50_000))
    assert reason is not None and reason.startswith("invalid-rule-pack:"), reason


def test_an_unforeseen_failure_is_a_refusal_not_the_end_of_the_reader(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(state_dir=Path("/nonexistent"))
    reference = ReferenceData(settings)

    def broken(*_: object) -> str | None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(reference, "_apply", broken)
    reason = reference._apply_guarded(settings.topic("policy.rules"), b"acme", b"")
    assert reason == "unreadable-reference-record: RecursionError"
