"""The training history's chains folded record by record give what verifying the whole chain
at once gives, keep the last rows only, and say which records are nobody's."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.api.training_index import TenantChain, history, located
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import Located, head_of, link, verify
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import TrainingEnabled
from ledgerflow.kafka.logs import RawRecord

BASE = {"tenant": "acme", "subject": "acme", "occurred_at": "2026-11-30T00:00:00.000000Z"}
TYPES = ["TrainingEnabled", "TrainingDisabled", "TrainingRejected", "TrainingExpired"]


def _records(types: list[str]) -> list[Located]:
    out, head = [], None
    for offset, kind in enumerate(types):
        linked = link({**BASE, "type": kind, "payload": {"actor": "ana", "expires_at": offset}}, head)
        head = head_of(linked)
        out.append(Located("p.training.audit", 0, offset, "acme", linked))
    return out


def _tampered(records: list[Located], edits: list[tuple[int, str]]) -> list[Located]:
    """``records`` with, per (index, how): a changed payload, a dropped record or a swap."""
    out = list(records)
    for index, how in edits:
        i = index % len(out)
        if how == "alter":
            out[i] = Located(
                out[i].topic, 0, out[i].offset, "acme", {**out[i].record, "payload": {"actor": "eve"}}
            )
        elif how == "drop" and len(out) > 1:
            del out[i]
        elif how == "swap" and i + 1 < len(out):
            out[i], out[i + 1] = out[i + 1], out[i]
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from(TYPES), min_size=1, max_size=12),
    st.lists(st.tuples(st.integers(0, 11), st.sampled_from(["alter", "drop", "swap"])), max_size=3),
)
def test_folding_one_record_at_a_time_is_verifying_the_whole_chain(types: list[str], edits: Any) -> None:
    records = _tampered(_records(types), edits)
    broken = {(b.partition, b.offset) for b in verify(records)}  # what the history said before
    expected = ["broken" if (r.partition, r.offset) in broken else "ok" for r in records[::-1]]
    chain = TenantChain()
    for at in records:
        chain.add(at)
    assert [r["chain"] for r in chain.newest(len(records))] == expected
    assert [r["sequence"] for r in chain.newest(2)] == [r.record["sequence"] for r in records[::-1][:2]]
    assert history(records, "acme") == chain.newest(len(records))[::-1]


def test_a_gap_marks_the_record_after_it_until_it_is_filled() -> None:
    records = _records(["TrainingEnabled", "TrainingDisabled", "TrainingEnabled"])
    chain = TenantChain()
    chain.add(records[0])
    chain.add(records[2])
    assert [r["chain"] for r in chain.newest(5)] == ["broken", "ok"]  # sequence 2 not seen (yet)
    chain.add(records[1])  # it comes late: the late one is the break, as verify says at the end
    assert [r["chain"] for r in chain.newest(5)] == [
        r["chain"] for r in history([records[0], records[2], records[1]], "acme")[::-1]
    ]


def test_only_the_last_rows_are_kept_and_the_mode_is_the_state_after_each() -> None:
    chain = TenantChain(keep=3)
    for at in _records(["TrainingEnabled", "TrainingRejected", "TrainingDisabled", "TrainingRejected"]):
        chain.add(at)
    rows = chain.newest(10)
    assert [(r["sequence"], r["mode"]) for r in rows] == [(4, "disabled"), (3, "disabled"), (2, "enabled")]
    assert all(r["chain"] == "ok" for r in rows)


def _raw(key: bytes, tenant: str, subject: str) -> RawRecord:
    event = new_event(
        "TrainingEnabled",
        tenant=tenant,
        subject=subject,
        payload=TrainingEnabled("c1", 1, "ana", "label", 1_764_460_150_123_456, None),
        producer="ledgerflow-training",
        occurred_at_micros=1_764_460_150_000_000,
    )
    return RawRecord("p.training.audit", 1, 7, key, codec.encode(event), (), 0)


def test_a_record_is_its_tenants_only_when_key_subject_and_tenant_agree() -> None:
    at = located(_raw(b"acme", "acme", "acme"))
    assert at is not None and (at.key, at.partition, at.offset) == ("acme", 1, 7)
    assert at.record["type"] == "TrainingEnabled"
    assert located(_raw(b"globex", "acme", "acme")) is None
    assert located(_raw(b"acme", "acme", "globex")) is None
    assert located(_raw(b"\xff", "acme", "acme")) is None
    assert located(RawRecord("p.training.audit", 0, 0, b"acme", b"not an event", (), 0)) is None
