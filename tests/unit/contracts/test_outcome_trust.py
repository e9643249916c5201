"""``contracts/outcome_trust.untrusted_reason``: which outcome records the training and models agents'
recovery takes as its own — the next link of its tenant's chain, answering an input the input
partition holds (or none). Pure: records built here, no ports."""

from __future__ import annotations

import dataclasses

import pytest

from ledgerflow.contracts.chain import ZERO_HASH, ChainHead
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.outcome_trust import untrusted_reason
from ledgerflow.contracts.payloads import TrainingDisabled, TrainingEnabled
from ledgerflow.policy.wire import head_after
from tests.unit.agents.memory import T0

END = 10  # the input partition holds offsets 0..9


def outcome(n: int, tenant: str = "acme", *, subject: str | None = None, enable: bool = True) -> Event:
    """An unchained ``training.audit`` record as the training agent builds it."""
    kind = TrainingEnabled if enable else TrainingDisabled
    return new_event(
        kind.TYPE,
        tenant=tenant,
        subject=tenant if subject is None else subject,
        payload=kind(f"cmd-{n}", n, "admin-1", f"reason {n}", None, None),
        producer="ledgerflow-training",
        occurred_at_micros=T0 + n,
    )


def two_links() -> tuple[Event, Event]:
    first = link_event(outcome(1), None)
    return first, link_event(outcome(2, enable=False), head_after(first))


def test_the_first_link_of_a_tenants_chain_is_trusted() -> None:
    first, _ = two_links()
    assert untrusted_reason(first, None, 0, END) is None


def test_the_next_link_is_trusted_with_or_without_an_input_offset() -> None:
    first, second = two_links()
    assert untrusted_reason(second, head_after(first), END - 1, END) is None
    assert untrusted_reason(second, head_after(first), None, END) is None, "a tick answers no command"


@pytest.mark.parametrize("offset", [END, END + 1, 10**15])
def test_an_input_offset_the_input_partition_does_not_hold_is_refused(offset: int) -> None:
    first, _ = two_links()
    why = untrusted_reason(first, None, offset, END)
    assert why == f"lf-input {offset} but the input partition holds offsets below {END} only"


def test_a_copy_of_the_chain_head_is_refused() -> None:
    first, second = two_links()
    assert untrusted_reason(second, head_after(second), 1, END) == "a copy of the chain head (sequence 2)"
    assert untrusted_reason(first, head_after(second), 0, END) is not None, "an older link replayed"


def test_a_record_whose_hash_is_not_its_contents_is_refused() -> None:
    first, second = two_links()
    altered = dataclasses.replace(second, occurred_at=second.occurred_at + 1)
    why = untrusted_reason(altered, head_after(first), None, END)
    assert why is not None and why.endswith("is not the hash of its content")
    garbage = dataclasses.replace(second, hash="ff" * 32)
    assert untrusted_reason(garbage, head_after(first), None, END) is not None


def test_a_record_linked_to_another_head_is_refused() -> None:
    first, _ = two_links()
    elsewhere = link_event(outcome(2, enable=False), ChainHead("acme", 1, "ab" * 32))  # hashes right
    why = untrusted_reason(elsewhere, head_after(first), None, END)
    assert why is not None and why.startswith("sequence 2 after prev_hash abababababababab… does not follow")
    restart = link_event(outcome(2, enable=False), None)  # a new chain for a tenant that has one
    assert untrusted_reason(restart, head_after(first), None, END) is not None
    skipping = link_event(outcome(3), ChainHead("acme", 5, first.hash or ""))  # sequence 6 after 1
    assert untrusted_reason(skipping, head_after(first), None, END) is not None


def test_a_record_continuing_a_chain_recovery_has_no_record_of_is_refused() -> None:
    _, second = two_links()
    why = untrusted_reason(second, None, 1, END)
    assert why is not None and why.endswith("(no record of the tenant)")


def test_an_unchained_record_is_refused() -> None:
    assert untrusted_reason(outcome(1), None, None, END) == "unchained (no sequence/prev_hash/hash)"


def test_a_record_chained_under_another_subject_than_its_tenant_is_refused() -> None:
    """Heads are kept per tenant; a record of chain "globex" carrying tenant "acme" would pass
    ``follows`` against a head of nothing and change acme's state."""
    forged = link_event(outcome(1, subject="globex"), None)
    assert forged.prev_hash == ZERO_HASH
    why = untrusted_reason(forged, None, None, END)
    assert why == "its chain key 'globex' is not its tenant 'acme' (outcomes are chained per tenant)"
