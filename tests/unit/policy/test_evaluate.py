"""evaluate(): outcome, score, thresholds, redactions, conditions, determinism."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.errors import ValidationError
from ledgerflow.policy import (
    Action,
    Decision,
    TrainingState,
    Turn,
    apply_redactions,
    evaluate,
    load_rule_pack,
    merge_spans,
    parse_rule_pack,
)

OFF = TrainingState(enabled=False, version=4)
ON = TrainingState(enabled=True, version=5)


def rule(rule_id: str, action: str, weight: float, **when: Any) -> dict[str, Any]:
    return {"id": rule_id, "when": when, "action": action, "weight": weight}


def pack(*rules: dict[str, Any], tenant: str = "*", **extra: Any) -> Any:
    return load_rule_pack({"tenant": tenant, "rules": list(rules), **extra})


def turn(content: str, role: str = "user", tenant: str = "acme") -> Turn:
    return Turn(event_id="e-1", tenant=tenant, conversation_id="c-1", role=role, content=content)


# -- outcome and score -------------------------------------------------------------


def test_nothing_matched_allows_with_zero_score() -> None:
    decision = evaluate(turn("hello"), pack(rule("kw", "deny", 1, keywords=["bomb"])), OFF)
    assert decision.outcome is Action.ALLOW
    assert decision.score == 0.0
    assert decision.matched_rules == ()
    assert decision.redactions == ()


def test_outcome_is_most_severe_matched_action() -> None:
    p = pack(
        rule("a", "allow", 0, keywords=["x"]),
        rule("r", "review", 0, keywords=["x"]),
        rule("d", "deny", 0, keywords=["x"]),
        rule("x", "redact", 0, keywords=["x"]),
    )
    decision = evaluate(turn("x"), p, OFF)
    assert decision.outcome is Action.DENY
    assert decision.matched_rules == ("a", "r", "d", "x")


def test_allow_rule_does_not_override_a_more_severe_rule() -> None:
    p = pack(rule("ok", "allow", 0, role=["user"]), rule("rv", "review", 0, keywords=["refund"]))
    assert evaluate(turn("refund please"), p, OFF).outcome is Action.REVIEW


def test_score_is_sum_of_matched_weights_rounded() -> None:
    p = pack(*(rule(f"r{i}", "allow", 0.1, role=["user"]) for i in range(3)))
    decision = evaluate(turn("hi"), p, OFF)
    assert decision.score == 0.3  # not 0.30000000000000004
    assert decision.matched_rules == ("r0", "r1", "r2")


def test_score_threshold_escalates_allow_to_review() -> None:
    p = pack(
        rule("a", "allow", 1.0, role=["user"]),
        rule("b", "allow", 1.0, keywords=["invoice"]),
        thresholds={"review": 2.0, "deny": 5.0},
    )
    assert evaluate(turn("the invoice"), p, OFF).outcome is Action.REVIEW
    assert evaluate(turn("the bill"), p, OFF).outcome is Action.ALLOW


def test_review_threshold_never_lowers_redact() -> None:
    p = pack(rule("x", "redact", 3.0, pii=["email"]), thresholds={"review": 2.0})
    assert evaluate(turn("mail a@example.com"), p, OFF).outcome is Action.REDACT


def test_score_at_deny_threshold_denies_whatever_the_actions() -> None:
    p = pack(
        rule("a", "review", 2.5, keywords=["wire"]),
        rule("b", "redact", 2.5, pii=["iban"]),
        thresholds={"review": 2.0, "deny": 5.0},
    )
    decision = evaluate(turn("wire it to GB82 WEST 1234 5698 7654 32"), p, OFF)
    assert decision.score == 5.0
    assert decision.outcome is Action.DENY


def test_threshold_compares_the_rounded_score() -> None:
    p = pack(*(rule(f"r{i}", "allow", 0.1, role=["user"]) for i in range(3)), thresholds={"review": 0.3})
    assert evaluate(turn("hi"), p, OFF).outcome is Action.REVIEW


def test_decision_records_pack_and_training_state() -> None:
    p = pack(rule("a", "allow", 1, role=["user"])).with_version(9)
    decision = evaluate(turn("hi"), p, ON)
    assert decision.rule_pack_version == 9
    assert decision.constitution_hash == p.constitution_hash
    assert decision.training_version == 5
    assert decision.training_enabled is True


# -- conditions ----------------------------------------------------------------------


def test_all_given_conditions_must_hold() -> None:
    p = pack(rule("both", "review", 1, role=["assistant"], keywords=["refund"]))
    assert evaluate(turn("refund", role="assistant"), p, OFF).matched_rules == ("both",)
    assert evaluate(turn("refund", role="user"), p, OFF).matched_rules == ()
    assert evaluate(turn("hello", role="assistant"), p, OFF).matched_rules == ()


def test_empty_when_matches_every_turn() -> None:
    assert evaluate(turn(""), pack(rule("all", "review", 1)), OFF).outcome is Action.REVIEW


def test_length_bounds_are_inclusive_in_characters() -> None:
    p = pack(rule("len", "review", 1, min_length=3, max_length=5))
    assert [bool(evaluate(turn(t), p, OFF).matched_rules) for t in ["ab", "abc", "äöüßé", "abcdef"]] == [
        False,
        True,
        True,
        False,
    ]


def test_training_mode_condition() -> None:
    p = pack(rule("t", "deny", 1, training_mode=True, pii=["email"]))
    content = "mail a@example.com"
    assert evaluate(turn(content), p, ON).outcome is Action.DENY
    assert evaluate(turn(content), p, OFF).outcome is Action.ALLOW


def test_tenant_condition_in_default_pack() -> None:
    p = pack(rule("t", "review", 1, tenant=["acme"]))
    assert evaluate(turn("x", tenant="acme"), p, OFF).matched_rules == ("t",)
    assert evaluate(turn("x", tenant="globex"), p, OFF).matched_rules == ()


def test_tenant_pack_refuses_another_tenants_turn() -> None:
    p = pack(rule("t", "review", 1), tenant="acme")
    with pytest.raises(ValidationError, match="tenant 'acme' cannot evaluate"):
        evaluate(turn("x", tenant="globex"), p, OFF)


def test_patterns_are_case_sensitive_unless_casefolded() -> None:
    sensitive = pack(rule("p", "review", 1, patterns=["secret project"]))
    folded = pack(rule("p", "review", 1, patterns=["strasse \\d+"], pattern_casefold=True))
    assert evaluate(turn("SECRET PROJECT"), sensitive, OFF).matched_rules == ()
    assert evaluate(turn("secret project"), sensitive, OFF).matched_rules == ("p",)
    assert evaluate(turn("STRAẞE 12"), folded, OFF).matched_rules == ("p",)


def test_any_listed_pii_detector_is_enough() -> None:
    p = pack(rule("pii", "review", 1, pii=["iban", "phone"]))
    assert evaluate(turn("call 555-123-4567"), p, OFF).matched_rules == ("pii",)


# -- redactions -------------------------------------------------------------------


def test_redactions_cover_keyword_pattern_and_pii_matches_of_redact_rules() -> None:
    p = pack(
        rule("kw", "redact", 1, keywords=["nightingale"]),
        rule("pat", "redact", 1, patterns=["ACME-\\d+"]),
        rule("pii", "redact", 1, pii=["email"]),
        rule("rv", "review", 1, keywords=["ticket"]),
    )
    content = "Nightingale ticket ACME-42 from jo@example.com"
    decision = evaluate(turn(content), p, OFF)
    assert decision.outcome is Action.REDACT
    assert [content[s:e] for s, e in decision.redactions] == ["Nightingale", "ACME-42", "jo@example.com"]
    assert apply_redactions(content, decision.redactions) == (
        "███████████ ticket ███████ from ██████████████"
    )


def test_redaction_spans_are_on_the_original_text_after_folding() -> None:
    p = pack(rule("kw", "redact", 1, keywords=["strasse"]))
    content = "ß Straße ß STRASSE"
    decision = evaluate(turn(content), p, OFF)
    assert [content[s:e] for s, e in decision.redactions] == ["Straße", "STRASSE"]


def test_redactions_are_merged_and_sorted() -> None:
    p = pack(
        rule("b", "redact", 1, patterns=["world"]),
        rule("a", "redact", 1, patterns=["hello wo"]),
    )
    assert evaluate(turn("say hello world"), p, OFF).redactions == ((4, 15),)


def test_non_redact_rules_contribute_no_spans() -> None:
    p = pack(rule("rv", "review", 1, pii=["email"]))
    assert evaluate(turn("a@example.com"), p, OFF).redactions == ()


def test_redactions_kept_when_outcome_is_deny() -> None:
    p = pack(rule("x", "redact", 1, pii=["email"]), rule("d", "deny", 1, keywords=["bomb"]))
    decision = evaluate(turn("bomb a@example.com"), p, OFF)
    assert decision.outcome is Action.DENY
    assert decision.redactions == ((5, 18),)


def test_merge_spans_merges_overlapping_and_touching_and_drops_empty() -> None:
    assert merge_spans([(5, 8), (0, 2), (2, 3), (7, 9), (4, 4)]) == ((0, 3), (5, 9))


def test_apply_redactions_refuses_spans_outside_content() -> None:
    with pytest.raises(ValidationError, match="outside content of length 3"):
        apply_redactions("abc", [(1, 4)])


def test_apply_redactions_with_multichar_mask() -> None:
    assert apply_redactions("abcdef", [(1, 3)], mask="*") == "a**def"
    assert apply_redactions("abcdef", [(1, 3)], mask="[]") == "a[][]def"


@settings(max_examples=200, deadline=None)
@given(
    st.text(max_size=40),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=6),
)
def test_apply_redactions_preserves_length_and_unmasked_text(
    content: str, raw: list[tuple[int, int]]
) -> None:
    spans = [(min(a, b, len(content)), min(max(a, b), len(content))) for a, b in raw]
    masked = apply_redactions(content, spans)
    assert len(masked) == len(content)
    covered = {i for s, e in spans for i in range(s, e)}
    for index, char in enumerate(content):
        assert masked[index] == ("█" if index in covered else char)


# -- determinism ---------------------------------------------------------------------

MIXED: dict[str, Any] = {
    "tenant": "*",
    "version": 3,
    "thresholds": {"review": 1.0, "deny": 4.0},
    "rules": [
        rule("s", "deny", 2.5, pii=["secret"]),
        rule("p", "redact", 0.7, pii=["email", "phone", "payment_card", "iban"]),
        rule("k", "review", 0.3, keywords=["refund", "Straße"]),
        rule("q", "redact", 0.2, patterns=["order \\d+"], pattern_casefold=True),
        rule("t", "allow", 0.1, training_mode=True),
    ],
}

_ALPHABET = "abc ßSTRAẞE refund order 0123456789@.+-_ AKIAexample.com"


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=80), st.sampled_from(["user", "assistant", "tool"]))
def test_same_inputs_give_identical_decisions_across_reloads(content: str, role: str) -> None:
    first = load_rule_pack(MIXED)
    reloaded = parse_rule_pack(first.canonical_json())
    shuffled = load_rule_pack(json.loads(json.dumps(MIXED, sort_keys=True)))
    t = turn(content, role=role)
    decisions = {evaluate(t, p, ON) for p in (first, reloaded, shuffled, first)}
    assert len(decisions) == 1
    (decision,) = decisions
    assert isinstance(decision, Decision)
    assert list(decision.redactions) == sorted(decision.redactions)


def test_decision_to_dict_is_json_ready() -> None:
    p = load_rule_pack(MIXED)
    decision = evaluate(turn("refund to a@example.com"), p, ON)
    assert json.loads(json.dumps(decision.to_dict())) == {
        "outcome": "redact",
        "score": 1.1,
        "matched_rules": ["p", "k", "t"],
        "rule_pack_version": 3,
        "constitution_hash": p.constitution_hash,
        "training_version": 5,
        "training_enabled": True,
        "redactions": [[10, 23]],
    }


def test_evaluate_does_not_mutate_the_pack() -> None:
    p = load_rule_pack(MIXED)
    before = copy.copy(p.canonical_json())
    evaluate(turn("refund a@example.com"), p, ON)
    assert p.canonical_json() == before


# -- records -------------------------------------------------------------------------


def test_turn_refuses_unknown_role() -> None:
    with pytest.raises(ValidationError, match="role 'system'"):
        Turn(event_id="e", tenant="t", conversation_id="c", role="system", content="x")


def test_training_state_refuses_negative_version() -> None:
    with pytest.raises(ValidationError, match="non-negative"):
        TrainingState(enabled=True, version=-1)
