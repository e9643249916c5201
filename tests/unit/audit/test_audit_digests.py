"""Read-model diff: keys group by entity, bookkeeping is excluded, a changed value is named
with the record position from the entity's fence."""

from __future__ import annotations

from ledgerflow.audit import digests
from ledgerflow.audit.digests import Snapshot, compare_entity, describe, snapshot
from ledgerflow.projections import abandoned
from ledgerflow.projections.keys import Keys

CONV = "conv:{acme/c-1}"
FENCE = {"t.conversation.events:3": 41, "t.policy.decisions:3": 17}


def test_keys_of_one_entity_share_it_and_bookkeeping_is_excluded() -> None:
    assert digests.entity_of(CONV + ":turns") == CONV
    assert digests.entity_of(CONV + ":applied") == CONV
    assert digests.entity_of("tenant:{acme}:denials") == "tenant:{acme}"
    assert digests.entity_of("loose-key") == "loose-key"
    assert all(digests.is_bookkeeping(k) for k in (CONV + ":applied", "checkpoint:read-models", "complete"))
    assert not digests.is_bookkeeping(CONV + ":decisions")


def test_a_scratch_space_s_lease_keys_are_bookkeeping() -> None:
    """The audit's scratch space holds its lease (a replay token and the leased mark): read beside
    the live space, either one taken for read-model state would be a divergence."""
    assert digests.LEASED == abandoned.LEASED
    assert digests.is_bookkeeping(abandoned.LEASED)
    assert digests.is_bookkeeping(Keys("lf:audit:ab12:").replay_guard("ff00").removeprefix("lf:audit:ab12:"))


def test_digests_ignore_hash_field_order_but_not_list_order() -> None:
    digest = digests.reply_digest
    assert digest("hash", [b"turns", b"2", b"status", b"open"]) == digest(
        "hash", [b"status", b"open", b"turns", b"2"]
    )
    assert digest("hash", [b"turns", b"2", b"status", b"open"]) != digest(
        "hash", [b"turns", b"3", b"status", b"open"]
    )
    assert digest("list", [b"x", b"y"]) != digest("list", [b"y", b"x"])
    assert digest("set", [b"x", b"y"]) == digest("set", [b"y", b"x"])
    assert digest("zset", [b"m", b"2", b"n", b"1"]) == digest("zset", [b"n", b"1", b"m", b"2"])
    assert digest("zset", [b"m", b"2", b"n", b"1"]) != digest("zset", [b"m", b"1", b"n", b"2"])


def test_digests_tell_apart_what_concatenation_would_merge() -> None:
    """Field/value boundaries and the type are part of the digest."""
    digest = digests.reply_digest
    assert digest("hash", [b"ab", b"c"]) != digest("hash", [b"a", b"bc"])
    assert digest("list", [b"ab", b"c"]) != digest("list", [b"a", b"bc"])
    assert digest("list", [b"a", b"b"]) != digest("set", [b"a", b"b"])
    assert digest("string", b"x") != digest("list", [b"x"])
    assert digest("none", None) == digest("none", None)


def test_digests_do_not_depend_on_which_objects_hold_the_content() -> None:
    """One bytes object twice digests as two equal ones (no back-reference in what is hashed),
    and a bytes value, a list of it and a string of the same text stay apart."""
    digest = digests.reply_digest
    shared = b"open"
    copies = [bytes(bytearray(b"open")), bytes(bytearray(b"open"))]
    assert digest("list", [shared, shared]) == digest("list", copies)
    assert digest("hash", [b"a", shared, b"b", shared]) == digest("hash", [b"a", copies[0], b"b", copies[1]])
    assert digest(b"hash".decode(), [b"a", b"1"]) == digest("hash", [b"a", b"1"])
    assert len({digest("string", b"x"), digest("string", "x"), digest("list", [b"x"])}) == 3


def test_equal_spaces_have_no_divergence() -> None:
    keys = {CONV: "d1", CONV + ":turns": "d2"}
    result = compare_entity(CONV, keys, dict(keys), FENCE, dict(FENCE))
    assert result.divergences == [] and not result.moved_on


def test_a_changed_key_is_named_with_the_record_from_the_fence() -> None:
    live = {CONV: "d1", CONV + ":turns": "CHANGED", CONV + ":decisions": "d3"}
    rebuilt = {CONV: "d1", CONV + ":turns": "d2", CONV + ":decisions": "d3"}
    [div] = compare_entity(CONV, live, rebuilt, FENCE, dict(FENCE)).divergences
    assert (div.kind, div.key, div.cursor, div.offset) == (
        "content",
        CONV + ":turns",
        "t.conversation.events:3",
        41,
    )


def test_a_changed_decision_key_points_at_the_decisions_topic() -> None:
    live, rebuilt = {CONV + ":decisions": "x"}, {CONV + ":decisions": "y"}
    [div] = compare_entity(CONV, live, rebuilt, FENCE, dict(FENCE)).divergences
    assert (div.cursor, div.offset) == ("t.policy.decisions:3", 17)


def test_a_live_fence_ahead_means_moved_on_and_behind_means_lost() -> None:
    ahead = {**FENCE, "t.conversation.events:3": 50}
    assert compare_entity(CONV, {CONV: "a"}, {CONV: "b"}, ahead, FENCE).moved_on
    behind = {**FENCE, "t.conversation.events:3": 30}
    [div] = compare_entity(CONV, {CONV: "a"}, {CONV: "b"}, behind, FENCE).divergences
    assert (div.kind, div.cursor, div.offset) == ("fence", "t.conversation.events:3", 41)
    assert "lost records" in div.detail


def test_a_key_nobody_wrote_has_no_record_position() -> None:
    [div] = compare_entity("stray", {"stray": "x"}, {}, {}, {}).divergences
    assert (div.cursor, div.offset) == (None, None)
    assert "no record in the log wrote it" in div.detail


def test_describe_names_the_differing_hash_field() -> None:
    live = snapshot("hash", {b"turns": b"3", b"status": b"open"})
    rebuilt = snapshot("hash", {b"turns": b"2", b"status": b"open"})
    assert describe(live, rebuilt) == "field 'turns': live '3', rebuilt '2'"
    assert (
        describe(Snapshot("list", ["a"]), Snapshot("list", ["a", "b"])) == "live has 1 entries, the rebuild 2"
    )


def test_a_tenant_counter_of_decisions_points_at_the_decisions_topic() -> None:
    fence = {"t.conversation.events:0": 90, "t.conversation.events:4": 12, "t.policy.decisions:4": 33}
    live = snapshot("hash", {b"decisions_allow": b"52", b"turns": b"9"})
    rebuilt = snapshot("hash", {b"decisions_allow": b"51", b"turns": b"9"})
    fields = digests.differing_fields(live, rebuilt)
    assert fields == ["decisions_allow"]
    assert digests.record_of("tenant:{acme}", fence, fields) == ("t.policy.decisions:4", 33)
    assert digests.record_of("tenant:{acme}", fence, ["turns"]) == ("t.conversation.events:0", 90)


def test_training_and_usage_keys_point_at_their_own_topics() -> None:
    fence = {"t.conversation.events:0": 90, "t.training.audit:1": 4, "t.usage.windows:1": 12}
    assert digests.record_of("tenant:{acme}:training", fence) == ("t.training.audit:1", 4)
    assert digests.record_of("tenant:{acme}:usage", fence) == ("t.usage.windows:1", 12)


def test_a_fence_gone_or_of_another_type_reads_as_nothing_applied() -> None:
    """A fence listed by SCAN and dropped (generation switch, flush) before the read comes back as
    TYPE none with no content: an empty fence, which the comparison reports, not a crash."""
    assert digests.fence_of_reply("none", None) == {}
    assert digests.fence_of_reply("string", b"7") == {}
    assert digests.fence_of_reply("hash", [b"t.policy.decisions:3", b"17"]) == {"t.policy.decisions:3": 17}
    assert digests.fence_of_reply("hash", [b"t.policy.decisions:3", b"seventeen"]) == {
        "t.policy.decisions:3": -1
    }


def test_a_key_name_that_is_not_utf8_is_kept_reversibly() -> None:
    raw = b"conv:{acme/\xff\xfe}:turns"
    name = digests.key_text(raw)
    assert name.encode("utf-8", "surrogateescape") == raw
    assert digests.entity_of(name) == digests.key_text(b"conv:{acme/\xff\xfe}")
