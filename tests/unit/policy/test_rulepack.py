"""Rule packs: validation messages, compilation, canonical JSON and the constitution hash."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
import rfc8785

from ledgerflow.errors import ValidationError
from ledgerflow.policy import (
    Action,
    RulePack,
    load_rule_pack,
    parse_rule_pack,
    rule_pack_schema,
)

PACK: dict[str, Any] = {
    "tenant": "acme",
    "description": "test pack",
    "thresholds": {"review": 2.0, "deny": 5.0},
    "rules": [
        {
            "id": "no-secrets",
            "when": {"pii": ["secret"]},
            "action": "deny",
            "weight": 5,
        },
        {
            "id": "codename",
            "description": "mask the codename",
            "when": {"keywords": ["Nightingale"], "role": ["assistant", "user"]},
            "action": "redact",
            "weight": 1.5,
        },
        {
            "id": "ticket",
            "when": {"patterns": ["acme-\\d+"], "pattern_casefold": True},
            "action": "review",
            "weight": 0.5,
        },
    ],
}


def pack_with(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PACK)
    doc.update(changes)
    return doc


def rule_with(index: int, **changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PACK)
    doc["rules"][index].update(changes)
    return doc


def refused(doc: Any) -> str:
    with pytest.raises(ValidationError) as info:
        load_rule_pack(doc)
    return str(info.value)


# -- loading -----------------------------------------------------------------------


def test_load_compiles_rules_in_pack_order() -> None:
    pack = load_rule_pack(PACK)
    assert [rule.id for rule in pack.rules] == ["no-secrets", "codename", "ticket"]
    assert pack.rules[0].action is Action.DENY
    assert pack.rules[0].weight == 5.0 and isinstance(pack.rules[0].weight, float)
    assert pack.rules[1].roles == frozenset({"assistant", "user"})
    assert pack.rules[2].pattern_casefold
    assert pack.thresholds.review == 2.0 and pack.thresholds.deny == 5.0
    assert pack.version is None
    assert pack.needs_folding


def test_load_does_not_keep_a_reference_to_the_callers_dict() -> None:
    doc = copy.deepcopy(PACK)
    pack = load_rule_pack(doc)
    doc["rules"][0]["action"] = "allow"
    assert pack.document()["rules"][0]["action"] == "deny"


def test_rule_pack_is_frozen() -> None:
    pack = load_rule_pack(PACK)
    with pytest.raises(AttributeError):
        pack.tenant = "other"  # type: ignore[misc]


def test_schema_is_draft_2020_12() -> None:
    assert rule_pack_schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


# -- refusals name the rule and the problem -------------------------------------------


def test_unknown_top_level_field_refused() -> None:
    message = refused(pack_with(colour="red"))
    assert "colour" in message and "pack" in message


def test_unknown_rule_field_refused_naming_the_rule() -> None:
    message = refused(rule_with(1, severity="high"))
    assert "rule 'codename' (rules[1])" in message and "severity" in message


def test_unknown_condition_refused_naming_the_rule() -> None:
    message = refused(rule_with(0, when={"pii": ["secret"], "language": ["de"]}))
    assert "rule 'no-secrets' (rules[0]).when" in message and "language" in message


def test_empty_rules_refused() -> None:
    assert "no rules" in refused(pack_with(rules=[]))


def test_duplicate_rule_id_refused() -> None:
    message = refused(rule_with(2, id="codename"))
    assert "rule 'codename' (rules[2])" in message
    assert "repeats the id of rules[1]" in message


def test_an_id_with_a_final_newline_is_refused_as_json_schema_means_its_pattern() -> None:
    """Python's ``$`` matches before a final newline: ``codename\n`` passed the id pattern, and a
    pack held rules ``codename`` and ``codename\n`` (one id to every reader, two to the unique check)."""
    assert "rule 'codename\\n' (rules[2]).id" in refused(rule_with(2, id="codename\n"))
    assert "pack.tenant: 'acme\\n' does not match" in refused(pack_with(tenant="acme\n"))
    assert "when.tenant[0]" in refused(rule_with(0, when={"tenant": ["acme\n"]}))
    load_rule_pack(rule_with(1, when={"keywords": ["line\n"]}))  # a keyword only needs a non-space


def test_bad_action_refused() -> None:
    message = refused(rule_with(0, action="block"))
    assert "rule 'no-secrets' (rules[0]).action" in message and "'block'" in message


def test_negative_weight_refused() -> None:
    message = refused(rule_with(1, weight=-1))
    assert "rule 'codename' (rules[1]).weight" in message and "minimum" in message


def test_bad_regex_refused_naming_rule_and_pattern() -> None:
    message = refused(rule_with(2, when={"patterns": ["ok", "(unclosed"]}))
    assert "rule 'ticket' (rules[2]).when.patterns[1]" in message
    assert "does not compile" in message


def test_pattern_matching_empty_string_refused() -> None:
    message = refused(rule_with(2, when={"patterns": ["x*"]}))
    assert "rules[2]" in message and "empty string" in message


@pytest.mark.parametrize(
    ("pattern", "why"),
    [
        (r"^(\w+\s?)+$", "backtracks exponentially"),
        (r"(?:a|aa){1,60}(?=c)", "more than 1000 ways"),
        (r"\ba*a*b", "quadratic"),
    ],
)
def test_pattern_that_backtracks_without_bound_refused_in_one_line(pattern: str, why: str) -> None:
    """Python's re would run these for seconds to hours on a short turn (the edge's event loop,
    a worker's partition): the pack is refused with the pattern and the reason."""
    message = refused(rule_with(2, when={"patterns": ["ok", pattern]}))
    assert f"rule 'ticket' (rules[2]).when.patterns[1] {pattern!r}: " in message
    assert why in message and "\n" not in message


def test_rule_without_id_is_named_by_index() -> None:
    doc = copy.deepcopy(PACK)
    del doc["rules"][1]["id"]
    message = refused(doc)
    assert "rules[1]" in message and "'id' is a required property" in message


def test_unknown_pii_detector_refused() -> None:
    assert "'ssn'" in refused(rule_with(0, when={"pii": ["ssn"]}))


def test_min_length_above_max_length_refused() -> None:
    message = refused(rule_with(0, when={"min_length": 10, "max_length": 5}))
    assert "rules[0]" in message and "min_length 10 is above max_length 5" in message


def test_review_threshold_above_deny_refused() -> None:
    assert "review must be <= deny" in refused(pack_with(thresholds={"review": 6, "deny": 5}))


def test_zero_threshold_refused() -> None:
    assert "thresholds.review" in refused(pack_with(thresholds={"review": 0}))


def test_redact_rule_without_content_condition_refused() -> None:
    message = refused(rule_with(1, when={"role": ["user"]}))
    assert "rule 'codename'" in message and "nothing to redact" in message


def test_tenant_condition_excluding_the_pack_tenant_refused() -> None:
    message = refused(rule_with(0, when={"pii": ["secret"], "tenant": ["globex"]}))
    assert "can never match" in message


def test_pattern_casefold_without_patterns_refused() -> None:
    assert "patterns" in refused(rule_with(0, when={"pii": ["secret"], "pattern_casefold": True}))


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weight_refused(value: float) -> None:
    assert "weight" in refused(rule_with(0, weight=value))


def test_bool_weight_and_version_refused() -> None:
    assert "weight" in refused(rule_with(0, weight=True))
    assert "version" in refused(pack_with(version=True))


def test_non_object_refused() -> None:
    assert "rule pack is invalid" in refused(["not", "a", "pack"])


def test_many_errors_are_summarised() -> None:
    doc = copy.deepcopy(PACK)
    for rule in doc["rules"]:
        rule["weight"] = -1
        rule["action"] = "nope"
        rule["extra"] = 1
    message = refused(doc)
    assert "... and 4 more" in message


# -- text parsing -----------------------------------------------------------------


def test_parse_json_text() -> None:
    assert parse_rule_pack(json.dumps(PACK)) == load_rule_pack(PACK)


def test_parse_refuses_duplicate_keys() -> None:
    text = '{"tenant": "acme", "tenant": "globex", "rules": []}'
    with pytest.raises(ValidationError, match="repeats the key 'tenant'"):
        parse_rule_pack(text)


def test_parse_refuses_nan_constant() -> None:
    text = json.dumps(PACK).replace('"weight": 5', '"weight": NaN')
    with pytest.raises(ValidationError, match="NaN"):
        parse_rule_pack(text)


def test_parse_refuses_broken_json_with_position() -> None:
    with pytest.raises(ValidationError, match="not valid JSON.*line 1"):
        parse_rule_pack('{"tenant": ')


def test_parse_yaml_works_or_says_how_to_enable_it() -> None:
    text = "tenant: acme\nrules:\n  - id: r1\n    when: {role: [user]}\n    action: review\n    weight: 1\n"
    try:
        import yaml  # noqa: F401
    except ImportError:
        with pytest.raises(ValidationError, match="install pyyaml"):
            parse_rule_pack(text, fmt="yaml")
    else:
        assert parse_rule_pack(text, fmt="yaml").rules[0].id == "r1"


def test_parse_unknown_format_refused() -> None:
    with pytest.raises(ValidationError, match="unknown rule pack format"):
        parse_rule_pack("{}", fmt="toml")


# -- canonical JSON and constitution hash --------------------------------------------


def test_constitution_hash_stable_under_key_order_and_whitespace() -> None:
    reordered = json.loads(json.dumps(PACK, sort_keys=True))
    reversed_keys = {key: PACK[key] for key in reversed(list(PACK))}
    pretty = json.dumps(PACK, indent=4)
    compact = json.dumps(PACK, separators=(",", ":"))
    hashes = {
        load_rule_pack(PACK).constitution_hash,
        load_rule_pack(reordered).constitution_hash,
        load_rule_pack(reversed_keys).constitution_hash,
        parse_rule_pack(pretty).constitution_hash,
        parse_rule_pack(compact).constitution_hash,
    }
    assert len(hashes) == 1


def test_constitution_hash_is_sha256_of_rfc8785_without_version() -> None:
    import hashlib

    pack = load_rule_pack(pack_with(version=7))
    without_version = {key: value for key, value in PACK.items()}
    expected = hashlib.sha256(rfc8785.dumps(without_version)).hexdigest()
    assert pack.constitution_hash == expected
    assert len(pack.constitution_hash) == 64


def test_integer_and_float_weights_hash_the_same() -> None:
    as_float = rule_with(0, weight=5.0)
    assert load_rule_pack(as_float).constitution_hash == load_rule_pack(PACK).constitution_hash


def test_constitution_hash_changes_when_a_rule_changes() -> None:
    changed = rule_with(1, weight=1.6)
    assert load_rule_pack(changed).constitution_hash != load_rule_pack(PACK).constitution_hash


def test_constitution_hash_changes_when_rules_are_reordered() -> None:
    doc = copy.deepcopy(PACK)
    doc["rules"].reverse()
    assert load_rule_pack(doc).constitution_hash != load_rule_pack(PACK).constitution_hash


def test_with_version_keeps_hash_and_changes_canonical_json() -> None:
    draft = load_rule_pack(PACK)
    published = draft.with_version(3)
    assert published.version == 3
    assert published.constitution_hash == draft.constitution_hash
    assert json.loads(published.canonical_json())["version"] == 3
    assert "version" not in json.loads(draft.canonical_json())
    assert published != draft
    assert draft.version is None  # the original is unchanged


def test_with_version_refuses_non_positive_versions() -> None:
    with pytest.raises(ValidationError, match=">= 1"):
        load_rule_pack(PACK).with_version(0)


def test_canonical_json_round_trips_to_an_equal_pack() -> None:
    pack = load_rule_pack(PACK).with_version(2)
    again = parse_rule_pack(pack.canonical_json())
    assert again == pack
    assert again.canonical_json() == pack.canonical_json()
    assert again.constitution_hash == pack.constitution_hash
    assert hash(again) == hash(pack)


def test_canonical_json_is_rfc8785() -> None:
    pack = load_rule_pack(PACK)
    assert pack.canonical_json() == rfc8785.dumps(PACK)
    assert isinstance(load_rule_pack(PACK), RulePack)


def test_float_version_normalised_to_int() -> None:
    assert load_rule_pack(pack_with(version=2.0)).version == 2


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[" * 50_000 + "]" * 50_000, "nests too deeply"),
        ('{"tenant": "acme", "version": ' + "9" * 5_000 + "}", "thousands of digits"),
    ],
)
def test_a_pack_python_cannot_parse_is_a_validation_error(text: str, why: str) -> None:
    """A deeply nested document (RecursionError) or a huge integer (ValueError past Python's int
    limit) written to policy.rules used to escape as those errors and end the workers' reference
    reader, stopping every decision: it is refused like any invalid pack."""
    with pytest.raises(ValidationError, match=why):
        parse_rule_pack(text)


@pytest.mark.parametrize("shape", ["object", "array"])
@pytest.mark.parametrize("where", ["unknown field", "rule description"])
def test_a_pack_parsed_elsewhere_that_nests_deeply_is_a_validation_error(shape: str, where: str) -> None:
    """The edge parses a body with orjson (up to 1,024 levels) and hands the dict over: 500 levels
    reached the recursive copy and raised RecursionError (a 500 answer). Refused in one line."""
    deep: object = "x"
    for _ in range(900):
        deep = {"k": deep} if shape == "object" else [deep]
    doc = pack_with()
    if where == "unknown field":
        doc["extra"] = deep
    else:
        doc["rules"][0]["description"] = deep
    with pytest.raises(ValidationError, match="nests deeper than 64 levels"):
        load_rule_pack(doc)


def test_a_pack_nested_as_deep_as_allowed_is_judged_on_its_content_not_its_depth() -> None:
    deep: object = "x"
    for _ in range(60):
        deep = [deep]
    doc = pack_with()
    doc["extra"] = deep
    with pytest.raises(ValidationError) as caught:
        load_rule_pack(doc)
    assert "nests deeper" not in str(caught.value)  # the unknown field is what is refused


def test_a_yaml_pack_with_aliases_is_refused_before_it_expands() -> None:
    """Nine lines of nested aliases are 387 million nodes once expanded: `policy validate` of
    such a file was still running a minute later. Aliases are refused at parse time."""
    from ledgerflow.policy.validation import parse_rule_pack_text

    bomb = '\na: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
    )
    with pytest.raises(ValidationError, match=r"uses the YAML alias \*a \(line 3\)"):
        parse_rule_pack_text(bomb, fmt="yaml")
    assert parse_rule_pack_text("a: &x 1\nb: 2\n", fmt="yaml") == {"a": 1, "b": 2}  # an unused anchor


def test_integral_float_lengths_are_ints_and_evaluate() -> None:
    """JSON Schema's integer admits 5.0; the compiled evaluator declares an int, so the pack in
    hand (before any re-read of its canonical text) must carry one."""
    from ledgerflow.policy import TrainingState, Turn, evaluate

    doc = rule_with(0, when={"min_length": 5.0, "max_length": 100.0})
    rule = load_rule_pack(doc).rules[0]
    assert (type(rule.min_length), type(rule.max_length)) == (int, int)
    turn = Turn("e1", "acme", "c1", "user", "hello there")
    assert evaluate(turn, load_rule_pack(doc), TrainingState(False, 0)).outcome == Action.DENY


HUGE = "x" * 200_000  # a 256 KiB body holds one such string


def _set(doc: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    node: Any = doc
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("description",), HUGE),
        (("tenant",), HUGE),
        (("thresholds", "review"), HUGE),
        (("rules",), HUGE),
        (("rules", 0, "id"), HUGE),
        (("rules", 0, "action"), HUGE),
        (("rules", 0, "weight"), HUGE),
        (("rules", 0, "when"), HUGE),
        (("rules", 0, "when", "pii"), [HUGE]),
        (("rules", 1, "when", "keywords"), [HUGE]),
        (("rules", 2, "when", "patterns"), [HUGE]),
        (("rules", 0, "when", "tenant"), [HUGE]),
        (("rules", 0, HUGE), 1),
        ((HUGE,), 1),
        (("rules", 0, "when", HUGE), 1),
        (("rules", 0, "when", "pii"), {f"k{n}": HUGE[:1000] for n in range(100)}),
        (("rules", 1, "when", "keywords"), [HUGE[:1000]] * 200),
        (("rules", 0, "weight"), 10**300),
        (("rules", 0, "when", "tenant"), [f"t{n}-" + "a" * 120 for n in range(1500)]),
    ],
    ids=lambda v: str(v)[:24],
)
def test_a_huge_value_is_quoted_briefly_in_the_refusal(path: tuple[str | int, ...], value: Any) -> None:
    """A value is quoted as the edge's other refusals quote one (``ledgerflow.quoting``): before, a
    200,000-character string came back whole in the detail (a rule's id three times: 600 KB)."""
    message = refused(_set(copy.deepcopy(PACK), path, value))
    assert message.startswith("rule pack is invalid: ") and "\n" not in message
    assert len(message) < 1000, message[:300]


def test_a_long_valid_rule_id_is_named_whole() -> None:
    """Ids are quoted up to the 128 characters the schema allows: the edge's ``errors`` list
    names a semantic problem's rule by it."""
    rule_id = "r" * 128
    message = refused(rule_with(1, id=rule_id, action="redact", when={"role": ["user"]}))
    assert f"rule {rule_id!r} (rules[1]) has action 'redact'" in message
