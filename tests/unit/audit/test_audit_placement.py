"""An outcome record outside its tenant's partition is one ``<check>.misplaced`` finding."""

from __future__ import annotations

from ledgerflow.audit.placement import misplaced_link, misplaced_outcome
from ledgerflow.contracts.payloads import TokenMinted
from ledgerflow.identity.trail import ChainWriter
from ledgerflow.kafka.placement import Placements, placement
from ledgerflow.projections.ops import Position
from ledgerflow.training.wire import record_of
from tests.unit.audit.test_audit_training import T0, enabled

PARTITIONS = 6


def test_an_outcome_in_its_tenant_s_partition_is_no_finding() -> None:
    home = placement(b"acme", PARTITIONS)
    at = Position("lf.training.audit", home, 3)
    assert misplaced_outcome("training", at, record_of(enabled(1, T0)), Placements(PARTITIONS)) is None


def test_an_outcome_elsewhere_is_named_with_the_partition_it_belongs_in() -> None:
    home = placement(b"acme", PARTITIONS)
    elsewhere = (home + 1) % PARTITIONS
    at = Position("lf.training.audit", elsewhere, 7)
    finding = misplaced_outcome("training", at, record_of(enabled(1, T0)), Placements(PARTITIONS))
    assert finding is not None
    assert (finding.kind, finding.partition, finding.offset, finding.key) == (
        "training.misplaced",
        elsewhere,
        7,
        "acme",
    )
    assert f"belongs in partition {home} of {PARTITIONS}, not {elsewhere}" in finding.detail


def test_without_a_known_layout_nothing_is_judged() -> None:
    at = Position("lf.models.audit", 5, 0)
    assert misplaced_outcome("models", at, record_of(enabled(1, T0)), None) is None


def test_an_identity_record_outside_its_chain_keys_partition_is_named_by_its_chain() -> None:
    """``identity.audit`` is chained per key (the subject): placed by it, not by the tenant."""
    chain_id = "issuer:dev-6"
    record = ChainWriter(chain_id).link("acme", TokenMinted("j", "u", ("admin",), "k", T0, T0 + 1), T0)
    placed = Placements(2)
    home = placement(chain_id.encode(), 2)
    assert misplaced_link("identity", Position("lf.identity.audit", home, 0), record, placed) is None
    assert misplaced_link("identity", Position("lf.identity.audit", 1 - home, 0), record, None) is None
    finding = misplaced_link("identity", Position("lf.identity.audit", 1 - home, 4), record, placed)
    assert finding is not None
    assert (finding.kind, finding.partition, finding.offset, finding.key) == (
        "identity.misplaced",
        1 - home,
        4,
        chain_id,
    )
    assert f"belongs in partition {home} of 2 (the pinned count), not {1 - home}" in finding.detail
