"""Evaluation: a pure function of (turn, rule pack, training state) → Decision.

No clock, no randomness, no I/O; rules are visited in pack order and every
collection in the result is a tuple in a defined order, so the same inputs
always give an identical Decision.

Steps for one turn:
1. Visit the rules in pack order; a rule matches when every condition it gives
   holds (cheap conditions first: role, tenant, training mode, length; then
   keywords, patterns, PII detectors). A model rule (``model_unavailable``)
   compares the turn's model with the tenant's registry (``ModelCatalog``); a
   decision under a pack with model rules records the registry version. Detectors run at most once per turn.
2. The base outcome is the most severe action among matched rules
   (allow < review < redact < deny); ``allow`` when nothing matched.
3. The score is the exact sum (math.fsum) of matched weights, rounded to 6
   decimals. With thresholds: score >= deny → deny; otherwise score >= review →
   at least review. Thresholds only escalate.
4. Redactions are the spans matched by the content conditions of matched
   ``redact`` rules, sorted and merged.

Work is metered (``budget.py``): every scan and every candidate is charged in
deterministic work units, and a turn whose evaluation passes ``EVALUATION_BUDGET``
gets a ``review`` decision with reason ``evaluation_budget`` instead (no score, no
redactions), whatever its rules would have said.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ledgerflow.errors import ValidationError
from ledgerflow.policy import budget as cost
from ledgerflow.policy.budget import BUDGET_REASON, EVALUATION_BUDGET, BudgetExceeded, WorkMeter
from ledgerflow.policy.detectors import DETECTORS, Span
from ledgerflow.policy.patterns import PatternMatcher
from ledgerflow.policy.rulepack import Rule, RulePack
from ledgerflow.policy.text import FoldedText, fold
from ledgerflow.policy.types import NO_MODELS, SEVERITY, Action, Decision, ModelCatalog, TrainingState, Turn

SCORE_DECIMALS = 6
DEFAULT_MASK = "\u2588"  # █


def evaluate(
    turn: Turn,
    pack: RulePack,
    training: TrainingState,
    *,
    meter: WorkMeter | None = None,
    models: ModelCatalog = NO_MODELS,
) -> Decision:
    """Decide one turn under ``pack``, ``training`` and the tenant's model registry ``models``
    (read only by model rules); see the module docstring.

    ``meter`` (a fresh ``WorkMeter()`` with ``EVALUATION_BUDGET`` when omitted) counts
    the work; pass your own to read ``meter.used`` afterwards.
    """
    if pack.tenant != "*" and pack.tenant != turn.tenant:
        raise ValidationError(
            f"rule pack for tenant {pack.tenant!r} cannot evaluate turn {turn.event_id!r} "
            f"of tenant {turn.tenant!r}; use that tenant's pack or the default ('*') pack"
        )
    meter = meter if meter is not None else WorkMeter(EVALUATION_BUDGET)
    models_version = models.version if pack.needs_models else None
    try:
        return _evaluate(turn, pack, training, meter, models, models_version)
    except BudgetExceeded:
        return Decision(
            outcome=Action.REVIEW,
            score=0.0,
            matched_rules=(BUDGET_REASON,),
            rule_pack_version=pack.version,
            constitution_hash=pack.constitution_hash,
            training_version=training.version,
            training_enabled=training.enabled,
            redactions=(),
            reason=BUDGET_REASON,
            models_version=models_version,
        )


def _evaluate(
    turn: Turn,
    pack: RulePack,
    training: TrainingState,
    meter: WorkMeter,
    models: ModelCatalog,
    models_version: int | None,
) -> Decision:
    content = turn.content
    length = len(content)
    folded = fold(content, meter) if pack.needs_folding else None
    detected: dict[str, tuple[Span, ...]] = {}
    matched: list[Rule] = []
    spans: list[Span] = []

    # Step 1.
    for rule in pack.rules:
        if rule.roles is not None and turn.role not in rule.roles:
            continue
        if rule.tenants is not None and turn.tenant not in rule.tenants:
            continue
        if rule.training_mode is not None and rule.training_mode != training.enabled:
            continue
        if rule.model_unavailable is not None and rule.model_unavailable == (turn.model in models.enabled):
            continue
        if rule.min_length is not None and length < rule.min_length:
            continue
        if rule.max_length is not None and length > rule.max_length:
            continue
        found = _content_spans(rule, content, folded, detected, meter)
        if found is None:
            continue
        matched.append(rule)
        if rule.action is Action.REDACT:
            spans.extend(found)

    # Step 2.
    outcome = Action.ALLOW
    for rule in matched:
        if SEVERITY[rule.action] > SEVERITY[outcome]:
            outcome = rule.action

    # Step 3.
    score = round(math.fsum(rule.weight for rule in matched), SCORE_DECIMALS)
    deny_at = pack.thresholds.deny
    review_at = pack.thresholds.review
    if deny_at is not None and score >= deny_at:
        outcome = Action.DENY
    elif review_at is not None and score >= review_at and outcome is Action.ALLOW:
        outcome = Action.REVIEW

    # Step 4.
    return Decision(
        outcome=outcome,
        score=score,
        matched_rules=tuple(rule.id for rule in matched),
        rule_pack_version=pack.version,
        constitution_hash=pack.constitution_hash,
        training_version=training.version,
        training_enabled=training.enabled,
        redactions=merge_spans(spans) if spans else (),
        models_version=models_version,
    )


def _content_spans(
    rule: Rule,
    content: str,
    folded: FoldedText | None,
    detected: dict[str, tuple[Span, ...]],
    meter: WorkMeter,
) -> list[Span] | None:
    """Spans matched by the rule's content conditions, or None if one of them fails.

    A rule with no content condition matches with no spans. Spans are collected
    only for ``redact`` rules; other rules stop at the first match.
    """
    want_spans = rule.action is Action.REDACT
    spans: list[Span] = []
    if rule.keywords is not None:
        assert folded is not None
        if want_spans:
            hits = [folded.to_original(s, e) for s, e in rule.keywords.spans(folded.folded, meter)]
            if not hits:
                return None
            spans.extend(hits)
        elif not rule.keywords.search(folded.folded, meter):
            return None
    if rule.patterns:
        subject = content
        if rule.pattern_casefold:
            assert folded is not None
            subject = folded.folded
        hits = []
        for matcher in rule.matchers:
            meter.charge(pattern_cost(matcher, subject))
            if want_spans:
                hits.extend(matcher.spans(subject, meter))
            elif matcher.search(subject):
                hits.append((0, 0))
                break
        if not hits:
            return None
        if want_spans:
            if rule.pattern_casefold:
                assert folded is not None
                hits = [folded.to_original(start, end) for start, end in hits]
            spans.extend(hits)
    if rule.pii:
        any_hit = False
        for name in rule.pii:
            hits_for = detected.get(name)
            if hits_for is None:
                hits_for = DETECTORS[name](content, meter)
                detected[name] = hits_for
            if hits_for:
                any_hit = True
                if not want_spans:
                    break
                spans.extend(hits_for)
        if not any_hit:
            return None
    return spans


def pattern_cost(matcher: PatternMatcher, subject: str) -> int:
    """Units charged before searching ``subject`` with a rule pack pattern (patterns.py).

    RE2: linear. Python's ``re`` (``bounded``, ``unbounded``): the pattern's backtracking
    bound, ``steps + steps_per_char × r`` from a position r characters before the end, at
    each position where a match can start: where its literal prefix occurs (each bounded
    by r = the whole length), or at every position (quadratic in all when unbounded).
    """
    length = len(subject)
    per_char = cost.PATTERN_PER_CHAR * length
    if matcher.engine == "re2":
        return per_char
    if matcher.prefix:
        # Non-overlapping occurrences; a prefix that can overlap itself ("aa") may
        # start up to len(prefix) times per occurrence counted.
        starts = subject.count(matcher.prefix) * (
            len(matcher.prefix) if _self_overlapping(matcher.prefix) else 1
        )
        steps = starts * (matcher.steps + matcher.steps_per_char * length)
    else:
        positions = length + 1 if matcher.steps_per_char else length
        steps = matcher.steps * positions + matcher.steps_per_char * (length * (length + 1) // 2)
    return per_char + cost.PATTERN_PYTHON_PER_STEP * steps


def _self_overlapping(text: str) -> bool:
    """True if a proper prefix of ``text`` is also its suffix ("abab", "aa")."""
    return any(text[:size] == text[-size:] for size in range(1, len(text)))


def merge_spans(spans: Iterable[Span]) -> tuple[Span, ...]:
    """Sort spans and merge those that overlap or touch; drop empty ones."""
    merged: list[list[int]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return tuple((start, end) for start, end in merged)


def apply_redactions(content: str, spans: Iterable[Span], mask: str = DEFAULT_MASK) -> str:
    """Replace every character inside ``spans`` by ``mask``.

    With a one-character mask (the default "█") the result has the same length
    as ``content``, so offsets stay valid. Spans are merged first; a span outside
    ``[0, len(content)]`` is refused with ValidationError.
    """
    merged = merge_spans(spans)
    if merged and (merged[0][0] < 0 or merged[-1][1] > len(content)):
        raise ValidationError(f"redaction spans {list(merged)} fall outside content of length {len(content)}")
    parts: list[str] = []
    cursor = 0
    for start, end in merged:
        parts.append(content[cursor:start])
        parts.append(mask * (end - start))
        cursor = end
    parts.append(content[cursor:])
    return "".join(parts)
