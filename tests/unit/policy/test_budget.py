"""Bounded evaluation: linear detectors, deterministic work units, review/evaluation_budget.

Nothing here measures time: work is asserted in units (ledgerflow/policy/budget.py),
which are a pure function of the turn and the pack. Timings are printed by
``python tests/unit/policy/adversarial.py``.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerflow.policy import Action, Decision, RulePack, TrainingState, Turn, evaluate, load_rule_pack
from ledgerflow.policy.budget import BUDGET_REASON, EVALUATION_BUDGET, WorkMeter, unmetered
from ledgerflow.policy.detectors import DETECTORS, find_secrets

ROOT = Path(__file__).resolve().parents[3]
LIMIT = 64 * 1024
OFF = TrainingState(enabled=False, version=1)
ALL_PII = ["email", "phone", "payment_card", "iban", "secret"]


def _load_adversarial() -> Mapping[str, Callable[[], str]]:
    spec = importlib.util.spec_from_file_location(
        "policy_adversarial", Path(__file__).with_name("adversarial.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    inputs: Mapping[str, Callable[[], str]] = module.ADVERSARIAL
    return inputs


ADVERSARIAL = _load_adversarial()


def pack_of(*rules: dict[str, Any]) -> RulePack:
    return load_rule_pack({"tenant": "*", "rules": list(rules)})


EVERY_DETECTOR = pack_of({"id": "pii", "when": {"pii": ALL_PII}, "action": "redact", "weight": 1})
DEFAULT = load_rule_pack(json.loads((ROOT / "examples/rulepacks/default.json").read_text("utf-8")))
BUILTIN = load_rule_pack(json.loads((ROOT / "ledgerflow/policy/builtin_default.json").read_text("utf-8")))
ACME = load_rule_pack(json.loads((ROOT / "examples/rulepacks/acme.json").read_text("utf-8")))


def turn(content: str) -> Turn:
    return Turn(event_id="e-1", tenant="acme", conversation_id="c-1", role="user", content=content)


def is_budget(decision: Decision) -> bool:
    return decision.reason == BUDGET_REASON


def metered(content: str, pack: RulePack) -> tuple[Decision, int]:
    meter = WorkMeter()
    decision = evaluate(turn(content), pack, OFF, meter=meter)
    return decision, meter.used


# -- case 4: the PEM turn -------------------------------------------------------------


def test_repeated_pem_headers_cost_linear_work_and_every_header_is_found() -> None:
    """Regression (issue 11, case 4): 64 KiB of "-----BEGIN PRIVATE KEY-----" cost 2-3 s."""
    header = "-----BEGIN PRIVATE KEY-----"
    content = header * (LIMIT // len(header))
    meter = unmetered()
    spans = find_secrets(content, meter)
    assert len(spans) == LIMIT // len(header)
    assert spans[0] == (0, len(header)) and spans[-1][1] == len(content)
    # Linear: a fixed number of units per character, far from the quadratic ~n²/2.
    assert meter.used <= 120 * len(content)
    decision, used = metered(content, EVERY_DETECTOR)
    assert not is_budget(decision) and decision.outcome is Action.REDACT
    assert decision.redactions == ((0, len(content)),)
    assert used <= EVALUATION_BUDGET


def test_pem_block_with_its_end_line_is_one_span_across_other_headers() -> None:
    text = (
        "key: -----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----BEGIN EC PRIVATE KEY-----\n"
        "QUJD\n-----END RSA PRIVATE KEY----- done -----BEGIN PRIVATE KEY-----"
    )
    spans = find_secrets(text)
    block_end = text.index(" done")
    assert spans == ((5, block_end), (text.index("-----BEGIN PRIVATE"), len(text)))


def test_pem_end_line_must_repeat_the_label_and_follow_inside_the_body() -> None:
    wrong_label = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----"
    assert find_secrets(wrong_label) == ((0, len("-----BEGIN EC PRIVATE KEY-----")),)
    interrupted = "-----BEGIN PRIVATE KEY-----\nAA!AA\n-----END PRIVATE KEY-----"
    assert find_secrets(interrupted) == ((0, len("-----BEGIN PRIVATE KEY-----")),)


# -- the budget ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_every_hostile_turn_gets_a_decision_within_the_budget(name: str) -> None:
    content = ADVERSARIAL[name]()
    assert len(content.encode("utf-8")) <= LIMIT
    for pack in (DEFAULT, EVERY_DETECTOR):
        meter = WorkMeter()
        decision = evaluate(turn(content), pack, OFF, meter=meter)
        if is_budget(decision):
            assert decision.outcome is Action.REVIEW
            assert decision.matched_rules == (BUDGET_REASON,)
            assert decision.redactions == () and decision.score == 0.0
        else:
            assert meter.used <= EVALUATION_BUDGET
        # Deterministic: the audit re-derives the same decision from the log.
        assert evaluate(turn(content), pack, OFF) == decision


@pytest.mark.parametrize(
    "name", ["email-many", "email-at-run", "card-like-groups", "phone-nanp", "iban-like"]
)
def test_candidate_floods_end_in_review_for_evaluation_budget(name: str) -> None:
    decision, used = metered(ADVERSARIAL[name](), EVERY_DETECTOR)
    assert decision.outcome is Action.REVIEW
    assert decision.reason == BUDGET_REASON
    assert decision.to_dict()["reason"] == BUDGET_REASON
    assert decision.matched_rules == (BUDGET_REASON,)
    assert used > EVALUATION_BUDGET


ORDINARY = {
    "prose": "Could you summarise the quarterly report for the sales team? Focus on EMEA revenue. ",
    "german": "Die Straße ist naß; Grüße aus Köln, wir treffen uns um 14:30 Uhr am Bahnhof. ",
    "cjk": "请总结本季度的销售报告，重点关注欧洲、中东和非洲地区的收入增长。",
    "code": "def total(items):\n    return sum(item.price * item.qty for item in items)  # 2024-01-15\n",
    "contacts": "Thanks for your help with the migration last week, it went smoothly. " * 12
    + "Write to jane@example.com or call +44 20 7946 0958 (ref ACME-12345, v10.0.19041). ",
    "table": "| 2024-01 | 1,234.50 | 98.7% | 42 |\n",
}


@pytest.mark.parametrize("name", sorted(ORDINARY))
@pytest.mark.parametrize(
    "pack", [DEFAULT, BUILTIN, ACME, EVERY_DETECTOR], ids=["default", "builtin", "acme", "all-pii"]
)
def test_ordinary_64k_turns_stay_well_under_the_budget(name: str, pack: RulePack) -> None:
    unit = ORDINARY[name]
    content = unit * (LIMIT // len(unit.encode("utf-8")))
    decision, used = metered(content, pack)
    assert not is_budget(decision)
    assert used <= EVALUATION_BUDGET * 6 // 10


def test_budget_decisions_keep_the_pack_and_training_identity() -> None:
    p = pack_of({"id": "pii", "when": {"pii": ["email"]}, "action": "deny", "weight": 1}).with_version(7)
    decision = evaluate(turn(ADVERSARIAL["email-at-run"]()), p, TrainingState(True, 3))
    assert is_budget(decision)
    assert (decision.rule_pack_version, decision.constitution_hash) == (7, p.constitution_hash)
    assert (decision.training_version, decision.training_enabled) == (3, True)


def test_a_smaller_budget_is_reached_deterministically() -> None:
    content = "mail a@b.co " * 200
    full = WorkMeter()
    evaluate(turn(content), EVERY_DETECTOR, OFF, meter=full)
    assert not is_budget(evaluate(turn(content), EVERY_DETECTOR, OFF, meter=WorkMeter(limit=full.used)))
    assert is_budget(evaluate(turn(content), EVERY_DETECTOR, OFF, meter=WorkMeter(limit=full.used - 1)))


# -- rule pack patterns ---------------------------------------------------------------


def test_quadratic_python_pattern_is_charged_as_quadratic_not_run() -> None:
    """``\\b`` keeps this pattern on Python's engine, where it takes seconds on 64 KiB of digits."""
    p = pack_of({"id": "money", "when": {"patterns": [r"\b\d+ dollars"]}, "action": "review", "weight": 1})
    assert p.rules[0].matchers[0].engine == "unbounded"
    decision, _ = metered("1" * LIMIT, p)
    assert is_budget(decision)
    short = evaluate(turn("it costs 12 dollars"), p, OFF)
    assert short.matched_rules == ("money",) and not is_budget(short)


def test_wide_bounded_python_pattern_is_charged_for_its_width() -> None:
    """Python tries up to 999 characters at each of 64K positions here: about 0.5 s."""
    p = pack_of({"id": "wide", "when": {"patterns": [r"[a-z]{1,999}\b"]}, "action": "review", "weight": 1})
    matcher = p.rules[0].matchers[0]
    assert (matcher.engine, matcher.width, matcher.prefix) == ("bounded", 999, "")
    assert is_budget(evaluate(turn("a" * LIMIT), p, OFF))
    assert evaluate(turn("see abc here"), p, OFF).matched_rules == ("wide",)


def test_python_patterns_are_charged_for_their_backtracking_bound() -> None:
    """Each start position costs the pattern's bound in steps, not just its width: an
    ambiguous pattern tries many ways from one position."""
    from ledgerflow.policy import budget
    from ledgerflow.policy.evaluate import pattern_cost

    wide = pack_of({"id": "w", "when": {"patterns": [r"[a-z]{1,999}\b"]}, "action": "review", "weight": 1})
    matcher = wide.rules[0].matchers[0]
    assert pattern_cost(matcher, "a" * 100) == 5 * 100 + budget.PATTERN_PYTHON_PER_STEP * 1998 * 100
    money = pack_of({"id": "m", "when": {"patterns": [r"\b\d+ dollars"]}, "action": "review", "weight": 1})
    matcher = money.rules[0].matchers[0]
    assert pattern_cost(matcher, "1" * 100) == 5 * 100 + budget.PATTERN_PYTHON_PER_STEP * (9 * 101 + 9 * 5050)


def test_unbounded_pattern_with_a_literal_start_is_charged_where_it_occurs() -> None:
    """``token: .*$`` does real work only where ``token: `` occurs: each such start is
    charged up to the whole length, the other positions only the scan."""
    from ledgerflow.policy import budget
    from ledgerflow.policy.evaluate import pattern_cost

    p = pack_of({"id": "tok", "when": {"patterns": [r"token: .*$"]}, "action": "redact", "weight": 1})
    matcher = p.rules[0].matchers[0]
    assert (matcher.engine, matcher.prefix, matcher.steps, matcher.steps_per_char) == (
        "unbounded",
        "token: ",
        8,
        2,
    )
    text = "x" * 93 + "token: abc"
    assert pattern_cost(matcher, text) == 5 * 103 + budget.PATTERN_PYTHON_PER_STEP * (8 + 2 * 103)
    quiet, _ = metered("nothing to see here " * 3000, p)
    assert not is_budget(quiet)
    assert evaluate(turn("my token: abc"), p, OFF).redactions == ((3, 13),)
    assert is_budget(evaluate(turn("token: " * 9000), p, OFF))


def test_bounded_pattern_with_a_literal_start_is_charged_where_it_occurs() -> None:
    p = pack_of({"id": "ids", "when": {"patterns": [r"\bACME-\d{3,6}\b"]}, "action": "redact", "weight": 1})
    assert p.rules[0].matchers[0].prefix == "ACME-"
    quiet, quiet_units = metered("nothing to see here " * 3000, p)
    busy, busy_units = metered("ACME-1234 " * 6000, p)
    assert not is_budget(quiet) and not is_budget(busy)
    assert busy_units > quiet_units
    assert busy.redactions[0] == (0, 9)


def test_re2_searches_that_read_past_their_match_are_charged_for_it() -> None:
    """``x+y|x`` on a run of x: each RE2 search reads to the end of the run (seconds in all)."""
    p = pack_of({"id": "x", "when": {"patterns": [r"x+y|x"]}, "action": "redact", "weight": 1})
    matcher = p.rules[0].matchers[0]
    assert (matcher.engine, matcher.lookahead) == ("re2", None)
    assert is_budget(evaluate(turn("x" * LIMIT), p, OFF))
    assert evaluate(turn("xxy x"), p, OFF).redactions == ((0, 3), (4, 5))
    ids = pack_of({"id": "ids", "when": {"patterns": [r"ACME-\d+"]}, "action": "redact", "weight": 1})
    assert ids.rules[0].matchers[0].lookahead == 1
    decision, _ = metered(("ACME-12 in a sentence of text " * 2000)[:LIMIT], ids)
    assert not is_budget(decision) and len(decision.redactions) == 2000


def test_the_same_pattern_without_boundary_runs_in_re2_over_64k() -> None:
    p = pack_of({"id": "money", "when": {"patterns": [r"\d+ dollars"]}, "action": "redact", "weight": 1})
    assert p.rules[0].matchers[0].engine == "re2"
    decision, used = metered("1" * LIMIT, p)
    assert decision.outcome is Action.ALLOW and used <= EVALUATION_BUDGET
    content = "1" * (LIMIT - 20) + "12 dollars"
    decision = evaluate(turn(content), p, OFF)
    assert decision.redactions == ((0, len(content)),)


# -- property: any text up to 64 KiB ----------------------------------------------------

UNITS = st.sampled_from(
    [
        "-----BEGIN PRIVATE KEY-----", "-----END PRIVATE KEY-----", "@", "a@b.co ", "+1 ", "4", "4 ",
        "(555) ", "GB82 ", "eyJ", ".", " sk-", "ghp_", "ß", "İ", "\u0301", "\U0001f600", "\ud800",
        "-", " ", "\n",
    ]
)  # fmt: skip


@st.composite
def hostile_text(draw: st.DrawFn) -> str:
    head = draw(st.text(max_size=200))
    unit = draw(UNITS) + draw(st.text(max_size=8))
    size = max(1, len(unit.encode("utf-8", "surrogatepass")))
    count = draw(st.integers(min_value=0, max_value=(LIMIT - 4 * len(head)) // size))
    return head + unit * count


@settings(max_examples=25, deadline=None)
@given(content=st.one_of(st.text(max_size=2000), hostile_text()))
def test_any_text_gets_a_decision_with_spans_inside_the_content(content: str) -> None:
    for pack in (DEFAULT, EVERY_DETECTOR):
        decision = evaluate(turn(content), pack, OFF)
        assert isinstance(decision, Decision)
        previous_end = -1
        for start, end in decision.redactions:
            assert 0 <= start < end <= len(content) and start > previous_end
            previous_end = end
    for name, detector in DETECTORS.items():
        spans = detector(content, unmetered())
        assert list(spans) == sorted(spans), name
        assert all(0 <= start < end <= len(content) for start, end in spans), name
