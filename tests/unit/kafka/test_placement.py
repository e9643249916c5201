"""kafka/placement.py: the one placement rule the policy agent, the projector, the rebuilds, the audit
and the usage agent share (pure parts: no broker)."""

from __future__ import annotations

import pytest

from ledgerflow.api.hub import partition_for
from ledgerflow.kafka import placement as placement_module
from ledgerflow.kafka.placement import MISROUTED, Layout, Placements, misrouted_reason, placement


def test_placement_is_the_default_partitioner_the_edge_hub_uses() -> None:
    for n in range(300):
        assert placement(f"conv-{n}".encode(), 6) == partition_for(f"conv-{n}", 6)


def test_a_keyed_record_belongs_only_in_its_keys_partition() -> None:
    placements = Placements(6)
    home = placement(b"conv-1", 6)
    assert placements.belongs(b"conv-1", home)
    assert not any(placements.belongs(b"conv-1", p) for p in range(8) if p != home)


def test_an_unkeyed_record_belongs_in_any_partition_below_the_count_and_none_beyond() -> None:
    placements = Placements(3)
    assert all(placements.belongs(None, p) for p in range(3))
    assert not placements.belongs(None, 3)


def test_hostile_keys_are_placed_like_any_bytes() -> None:
    placements = Placements(5)
    for key in (b"", b"\x00" * 10_000, "é²٣".encode(), bytes(range(256))):
        assert placements.belongs(key, placement(key, 5))


def test_the_memo_forgets_everything_at_its_bound_and_answers_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(placement_module, "MEMO_KEYS", 4)
    placements = Placements(7)
    keys = [f"k{n}".encode() for n in range(10)]
    first = [placements.belongs(k, placement(k, 7)) for k in keys]
    assert first == [True] * 10
    assert len(placements._memo) <= 4, "the memo grows past its bound (a producer cycling keys)"
    assert [placements.belongs(k, placement(k, 7)) for k in keys] == first


def test_the_misrouted_reason_names_the_key_where_it_belongs_and_where_it_was() -> None:
    reason = misrouted_reason(b"conv-1", 4, 6)
    assert reason.startswith(
        f"{MISROUTED}: key b'conv-1' belongs in partition {placement(b'conv-1', 6)} of 6, not 4"
    )
    assert "\n" not in misrouted_reason(b"a\nb", 0, 6), "one line, whatever the key"


@pytest.mark.parametrize(
    "text", [None, "", "some tool's metadata", "lf-layout a=-1", "lf-layout a=²", "lf-layout a=1_0"]
)
def test_only_a_well_formed_layout_pin_is_read_as_one(text: str | None) -> None:
    assert Layout.decode(text) is None


def test_a_layout_pin_round_trips() -> None:
    pinned = Layout({"conversation.events": 6, "training.commands": 3})
    assert Layout.decode(pinned.encode()) == pinned


def test_an_audit_topic_is_placed_under_its_command_topic_s_pinned_count() -> None:
    """The worker group pins its inputs only; the training and models agents write each outcome
    into its command's partition (co-partitioned), so their audit topics take that count: a
    tenant's outcomes are looked for where the agent wrote them, not under a count added since."""
    pinned = Layout({"conversation.events": 6, "training.commands": 3, "models.commands": 5})
    assert pinned.count_of("training.audit") == 3
    assert pinned.count_of("models.audit") == 5
    assert pinned.count_of("conversation.events") == 6
    assert pinned.count_of("usage.windows") is None  # not pinned: today's count is asked
    assert Layout({"training.audit": 4, "training.commands": 3}).count_of("training.audit") == 4
