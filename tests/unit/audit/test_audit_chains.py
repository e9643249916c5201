"""Chain checks over decoded records: a record altered without re-chaining and a record
inserted with a made-up chain are each located to topic/partition/offset."""

from __future__ import annotations

import dataclasses

from ledgerflow.audit.chains import ChainCheck
from ledgerflow.contracts.chain import ZERO_HASH, compute_hash


def feed_all(check: ChainCheck, entries) -> list:
    found = [check.feed(e.at, e.event) for e in entries]
    return [f for f in found if f is not None] + check.finish()


def three_decisions(log) -> None:
    for n in range(3):
        log.decide(log.turn("c-1", f"q{n}"))


def test_unbroken_chains_pass(hand_log) -> None:
    three_decisions(hand_log)
    hand_log.decide(hand_log.turn("c-2", "other"))
    check = ChainCheck()
    assert feed_all(check, hand_log.decisions) == []
    assert check.records == 4


def test_content_changed_without_rehashing_is_altered_at_its_offset(hand_log, with_payload) -> None:
    three_decisions(hand_log)
    hand_log.replace_decision(1, with_payload(hand_log.decisions[1].event, outcome="deny"))
    found = feed_all(ChainCheck(), hand_log.decisions)
    assert [(f.kind, f.topic, f.partition, f.offset, f.key) for f in found] == [
        ("chain.altered", "policy.decisions", 0, 1, "acme/c-1")
    ]


def test_a_made_up_chain_in_an_existing_conversation_is_reported(hand_log) -> None:
    three_decisions(hand_log)
    fake = dataclasses.replace(hand_log.decisions[2].event, sequence=4, prev_hash="ab" * 32)
    fake = dataclasses.replace(fake, hash=compute_hash(fake.to_json(), "ab" * 32))
    hand_log.append_decision(fake)
    found = feed_all(ChainCheck(), hand_log.decisions)
    assert [(f.kind, f.offset) for f in found] == [("chain.forged", 3)]


def test_a_deleted_record_is_missing(hand_log) -> None:
    three_decisions(hand_log)
    del hand_log.decisions[1]
    found = feed_all(ChainCheck(), hand_log.decisions)
    assert [f.kind for f in found] == ["chain.missing"]
    assert "sequence 2" in found[0].detail


def test_a_copy_under_a_new_event_id_no_longer_matches_its_hash(hand_log) -> None:
    three_decisions(hand_log)
    first = hand_log.decisions[0].event
    assert first.prev_hash == ZERO_HASH
    hand_log.append_decision(dataclasses.replace(first, event_id="00000000-0000-4000-8000-00000000beef"))
    kinds = [f.kind for f in feed_all(ChainCheck(), hand_log.decisions)]
    assert kinds == ["chain.altered"]  # the id is hashed: a copy with a new id no longer matches its hash


def test_records_given_as_verified_break_their_chains_as_any_other(hand_log) -> None:
    """A re-derived decision's chain walk reads only its key and chain fields: a deleted record
    before a made-up link, a repeat and a second conversation's chain are found exactly as from
    the whole record."""
    three_decisions(hand_log)
    hand_log.decide(hand_log.turn("c-2", "other"))
    second = hand_log.decisions[1].event
    fake = dataclasses.replace(hand_log.decisions[2].event, sequence=4, prev_hash="ab" * 32)
    fake = dataclasses.replace(fake, hash=compute_hash(fake.to_json(), "ab" * 32))
    hand_log.append_decision(fake)
    hand_log.append_decision(second)
    del hand_log.decisions[2]

    def walk(verified: bool) -> list:
        check = ChainCheck()
        found = [check.feed(e.at, e.event, verified=verified) for e in hand_log.decisions]
        return [(f.kind, f.offset, f.key, f.detail) for f in found if f is not None] + [
            (f.kind, f.offset, f.key, f.detail) for f in check.finish()
        ]

    expected = walk(False)
    assert {kind for kind, *_ in expected} == {"chain.missing", "chain.duplicate"}
    assert walk(True) == expected
