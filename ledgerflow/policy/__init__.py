"""The governance policy core: rule packs, detectors and pure evaluation.

This package is pure: it imports no Kafka, Redis or HTTP library, reads no
clock and does no I/O (a test checks the imports). Agents and the edge call:

- :func:`load_rule_pack` / :func:`parse_rule_pack` → :class:`RulePack`
- :func:`evaluate` (turn, pack, training) → :class:`Decision`
- :func:`apply_redactions` to mask the spans of a decision

See docs/policy.md for the rule pack format and the semantics.
"""

from __future__ import annotations

from ledgerflow.policy.evaluate import apply_redactions, evaluate, merge_spans
from ledgerflow.policy.rulepack import (
    CheckedPack,
    Rule,
    RulePack,
    Thresholds,
    check_rule_pack,
    check_rule_pack_text,
    constitution_hash,
    load_rule_pack,
    parse_rule_pack,
)
from ledgerflow.policy.types import NO_MODELS, Action, Decision, ModelCatalog, TrainingState, Turn
from ledgerflow.policy.validation import rule_pack_schema

__all__ = [
    "NO_MODELS",
    "Action",
    "CheckedPack",
    "Decision",
    "ModelCatalog",
    "Rule",
    "RulePack",
    "Thresholds",
    "TrainingState",
    "Turn",
    "apply_redactions",
    "check_rule_pack",
    "check_rule_pack_text",
    "constitution_hash",
    "evaluate",
    "load_rule_pack",
    "merge_spans",
    "parse_rule_pack",
    "rule_pack_schema",
]
