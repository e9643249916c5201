"""Rule packs ("constitutions"): load, validate, compile once, hash.

``load_rule_pack(doc)`` turns a JSON-shaped dict into a frozen :class:`RulePack`
whose regexes and keyword matchers are compiled and whose canonical JSON and
constitution hash are computed once. Evaluation (``evaluate.py``) only reads it.

It is two steps: ``check_rule_pack(doc)`` (cheap: schema, semantic checks, the pattern
limits of ``packlimits.py``, canonical JSON and hash — no pattern compiled) gives a
:class:`CheckedPack`, whose ``compile()`` builds the matchers (the costly part). A
reader that must check a signature or a hash first does it between the two.

The constitution hash is the SHA-256 (hex) of the RFC 8785 canonical JSON of the
pack *without* its ``version``: republishing the same rules under a new version
keeps the hash, and a decision records both (version and hash).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, replace
from typing import Any

import rfc8785

from ledgerflow.errors import ValidationError
from ledgerflow.policy.packlimits import Re2Budget, check_pattern_limits
from ledgerflow.policy.patterns import PatternMatcher, PatternRefused, compile_pattern
from ledgerflow.policy.text import KeywordMatcher, compile_keywords
from ledgerflow.policy.types import Action
from ledgerflow.policy.validation import (
    check_nesting,
    invalid_pattern,
    parse_rule_pack_text,
    rule_label,
    validate_document,
)
from ledgerflow.quoting import quoted


@dataclass(frozen=True, slots=True)
class Rule:
    """One compiled rule. ``None`` / empty means "condition not given"."""

    id: str
    action: Action
    weight: float
    roles: frozenset[str] | None
    tenants: frozenset[str] | None
    training_mode: bool | None
    min_length: int | None
    max_length: int | None
    keywords: KeywordMatcher | None
    patterns: tuple[re.Pattern[str], ...]
    pattern_casefold: bool
    pii: tuple[str, ...]
    description: str | None = None
    matchers: tuple[PatternMatcher, ...] = ()
    """``patterns`` with the engine that runs each (RE2 when it means the same; patterns.py)."""
    model_unavailable: bool | None = None
    """Model rule: matches when the turn's model is (True) / is not (False) unavailable to the tenant."""


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Score thresholds; ``None`` means that escalation is off."""

    review: float | None = None
    deny: float | None = None


@dataclass(frozen=True, slots=True, eq=False)
class RulePack:
    """A validated, compiled, immutable rule pack. Equal when canonical JSON is equal."""

    tenant: str
    version: int | None
    description: str | None
    thresholds: Thresholds
    rules: tuple[Rule, ...]
    constitution_hash: str
    canonical: bytes
    needs_folding: bool
    """True when some rule matches on case-folded text (keywords, pattern_casefold)."""
    needs_models: bool = False
    """True when some rule reads the model registry (``model_unavailable``)."""
    signer_kid: str | None = None
    """Key id of the publisher key whose signature admitted the pack (None: built in or unsigned)."""

    def canonical_json(self) -> bytes:
        """RFC 8785 canonical JSON of the whole pack, ``version`` included when set."""
        return self.canonical

    def document(self) -> dict[str, Any]:
        """A fresh JSON-shaped dict of the pack (safe to mutate)."""
        doc: dict[str, Any] = json.loads(self.canonical)
        return doc

    def with_version(self, version: int) -> RulePack:
        """The same constitution published as ``version`` (same constitution hash)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValidationError(f"rule pack version must be an integer >= 1, got {quoted(version)}")
        doc = self.document()
        doc["version"] = version
        return replace(_build(doc, self.rules), signer_kid=self.signer_kid)

    def signed_by(self, kid: str) -> RulePack:
        """The same pack, admitted by a signature of key ``kid``."""
        return replace(self, signer_kid=kid)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RulePack):
            return NotImplemented
        return self.canonical == other.canonical

    def __hash__(self) -> int:
        return hash(self.canonical)


@dataclass(frozen=True, slots=True)
class CheckedPack:
    """A pack document that passed every check but compiling its patterns; nothing compiled yet."""

    doc: dict[str, Any]
    constitution_hash: str
    canonical: bytes

    @property
    def tenant(self) -> str:
        tenant: str = self.doc["tenant"]
        return tenant

    def document(self) -> dict[str, Any]:
        """A fresh JSON-shaped dict of the pack (what a signature covers, ``version`` aside)."""
        doc: dict[str, Any] = json.loads(self.canonical)
        return doc

    def with_version(self, version: int) -> CheckedPack:
        """The same constitution as ``version`` (same constitution hash)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValidationError(f"rule pack version must be an integer >= 1, got {quoted(version)}")
        doc = self.document()
        doc["version"] = version
        return CheckedPack(doc, self.constitution_hash, rfc8785.dumps(doc))

    def compile(self) -> RulePack:
        """Compile the patterns and keywords (the costly step; bounded by ``packlimits.py``)."""
        budget = Re2Budget()
        rules = tuple(_compile_rule(self.doc, index, budget) for index in range(len(self.doc["rules"])))
        return _build(self.doc, rules)


def check_rule_pack(obj: Any) -> CheckedPack:
    """Every check of ``load_rule_pack`` that needs no pattern compiled, and the hash.

    Raises ValidationError naming the rule (id and index) and the problem for an
    unknown field, empty rules, a duplicate id, a bad action, a negative weight, a
    pack over the pattern limits, and the other checks in docs/policy.md.
    """
    check_nesting(obj)  # before anything recursive: a deeper document is a 422, not a RecursionError
    doc = copy.deepcopy(obj)
    validate_document(doc)
    if "version" in doc:
        doc["version"] = int(doc["version"])
    check_pattern_limits(doc)
    return CheckedPack(doc, constitution_hash(doc), rfc8785.dumps(doc))


def load_rule_pack(obj: Any) -> RulePack:
    """Validate and compile a rule pack document (a dict parsed from JSON or YAML).

    ``check_rule_pack``, then ``compile()``: also refuses a regex that does not compile
    or matches the empty string, and a pack whose RE2 programs are over budget.
    """
    return check_rule_pack(obj).compile()


def check_rule_pack_text(data: str | bytes, *, fmt: str = "json") -> CheckedPack:
    """Parse rule pack text (JSON, or YAML when PyYAML is installed) and check it, compiling nothing."""
    return check_rule_pack(parse_rule_pack_text(data, fmt=fmt))


def parse_rule_pack(data: str | bytes, *, fmt: str = "json") -> RulePack:
    """Parse rule pack text (JSON, or YAML when PyYAML is installed) and load it."""
    return check_rule_pack_text(data, fmt=fmt).compile()


def constitution_hash(doc: dict[str, Any]) -> str:
    """SHA-256 hex of the RFC 8785 canonical JSON of ``doc`` without ``version``."""
    content = {key: value for key, value in doc.items() if key != "version"}
    return hashlib.sha256(rfc8785.dumps(content)).hexdigest()


def _build(doc: dict[str, Any], rules: tuple[Rule, ...]) -> RulePack:
    thresholds = doc.get("thresholds", {})
    return RulePack(
        tenant=doc["tenant"],
        version=doc.get("version"),
        description=doc.get("description"),
        thresholds=Thresholds(review=thresholds.get("review"), deny=thresholds.get("deny")),
        rules=rules,
        constitution_hash=constitution_hash(doc),
        canonical=rfc8785.dumps(doc),
        needs_folding=any(rule.keywords is not None or rule.pattern_casefold for rule in rules),
        needs_models=any(rule.model_unavailable is not None for rule in rules),
    )


def _whole(value: Any) -> int | None:
    """A schema ``integer`` as an int: JSON Schema also admits ``5.0``, which the compiled
    evaluator would refuse where it declares an int (a pack evaluated before its canonical text
    is re-read, e.g. the one ``publish_pack`` has in hand)."""
    return None if value is None else int(value)


def _compile_rule(doc: dict[str, Any], index: int, budget: Re2Budget) -> Rule:
    raw = doc["rules"][index]
    when = raw["when"]
    label = rule_label(doc, index)
    casefold = bool(when.get("pattern_casefold", False))
    matchers = tuple(
        _compile_pattern(label, position, source) for position, source in enumerate(when.get("patterns", ()))
    )
    patterns = tuple(matcher.python for matcher in matchers)
    keywords = when.get("keywords")
    roles = when.get("role")
    tenants = when.get("tenant")
    return Rule(
        id=raw["id"],
        action=Action(raw["action"]),
        weight=float(raw["weight"]),
        roles=frozenset(roles) if roles is not None else None,
        tenants=frozenset(tenants) if tenants is not None else None,
        training_mode=when.get("training_mode"),
        min_length=_whole(when.get("min_length")),
        max_length=_whole(when.get("max_length")),
        keywords=compile_keywords(tuple(keywords)) if keywords is not None else None,
        patterns=patterns,
        pattern_casefold=casefold,
        pii=tuple(when.get("pii", ())),
        description=raw.get("description"),
        matchers=tuple(budget.charged(matcher) for matcher in matchers),
        model_unavailable=when.get("model_unavailable"),
    )


def _compile_pattern(label: str, position: int, source: str) -> PatternMatcher:
    """Compile one pattern; refuse it when it does not compile, matches the empty string,
    or would backtrack without a bound Python's engine can be charged for (patterns.py)."""
    try:
        compiled = re.compile(source)
    except re.error as exc:
        raise invalid_pattern(label, position, source, f"does not compile ({exc})") from None
    if compiled.fullmatch("") is not None:
        raise invalid_pattern(
            label, position, source, "matches the empty string, so it would match every turn"
        )
    try:
        return compile_pattern(source, compiled)
    except PatternRefused as exc:
        raise invalid_pattern(label, position, source, str(exc)) from None
