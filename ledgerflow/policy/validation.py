"""Rule pack checks: parse text, validate against the JSON Schema, then semantic checks.

Every refusal is a :class:`ledgerflow.errors.ValidationError` whose message names
where the problem is (``rule 'no-secrets' (rules[2]).when.patterns[0]``) and what
is wrong, so an operator can fix the pack without reading code. A value the pack holds is
quoted as the edge quotes a client's values (``ledgerflow.quoting``): one short line whatever
the value, a string cut to ``QUOTE_CHARS``, a list or object named, never shown (a rule id up to
the ``MAX_RULE_ID_CHARS`` the schema allows, whole).
"""

from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from importlib import resources
from typing import Any

from ledgerflow.errors import ValidationError
from ledgerflow.quoting import QUOTE_CHARS, quoted

SCHEMA_FILE = "rulepack.schema.json"
_MAX_REPORTED = 5
MAX_RULE_ID_CHARS = 128
"""The longest rule id the schema allows (``$defs/rule/properties/id``): quoted whole in a label."""
_MAX_KEYS_NAMED = 3
_HINT = "Fix the rule pack and publish it again (format: docs/policy.md)."


@lru_cache(maxsize=1)
def rule_pack_schema() -> dict[str, Any]:
    """The rule pack JSON Schema (draft 2020-12) shipped in this package."""
    text = resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@lru_cache(maxsize=1)
def _validator() -> Any:
    from jsonschema import Draft202012Validator, validators

    schema = rule_pack_schema()
    Draft202012Validator.check_schema(schema)
    strict = validators.extend(Draft202012Validator, {"pattern": _pattern})  # type: ignore[no-untyped-call]
    return strict(schema)


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    """The ``pattern`` keyword as JSON Schema means it (ECMA-262): a final ``$`` matches only at
    the end of the string. jsonschema uses Python's ``re``, where ``$`` also matches before a
    final newline: ``"r1\n"`` passed the rule id pattern, so a pack could hold rules ``r1`` and
    ``r1\n``, one id to any reader (decisions, logs, the console) and two to the unique-id check."""
    from jsonschema import ValidationError as SchemaError

    if isinstance(instance, str) and _ecma_pattern(pattern).search(instance) is None:
        yield SchemaError(f"{quoted(instance)} does not match {pattern!r}")


@lru_cache(maxsize=32)
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` with a final unescaped ``$`` as ``\\Z`` (the schema's patterns anchor only there)."""
    return re.compile(re.sub(r"(?<!\\)\$$", r"\\Z", pattern))


def parse_rule_pack_text(data: str | bytes, *, fmt: str = "json") -> Any:
    """Parse a rule pack document from JSON (or YAML when PyYAML is installed).

    JSON objects with duplicate keys and the non-standard constants NaN/Infinity
    are refused: both would make the constitution hash ambiguous.
    """
    if fmt == "json":
        try:
            return json.loads(
                data,
                object_pairs_hook=_refuse_duplicate_keys,
                parse_constant=_refuse_constant,
            )
        except json.JSONDecodeError as exc:
            raise ValidationError(f"rule pack is not valid JSON: {exc}. {_HINT}") from None
        except UnicodeDecodeError as exc:
            raise ValidationError(f"rule pack is not UTF-8 text: {exc}. {_HINT}") from None
        except RecursionError:
            raise ValidationError(f"rule pack nests too deeply to be a rule pack. {_HINT}") from None
        except ValueError:  # an integer of thousands of digits (over Python's int conversion limit)
            raise ValidationError(f"rule pack holds a number thousands of digits long. {_HINT}") from None
    if fmt == "yaml":
        try:
            import yaml
        except ImportError:
            raise ValidationError(
                "YAML rule packs need the PyYAML package, which is not installed; "
                "install pyyaml or publish the pack as JSON"
            ) from None
        try:
            return yaml.load(data, Loader=_loader_without_aliases(yaml))  # a SafeLoader
        except yaml.YAMLError as exc:
            raise ValidationError(f"rule pack is not valid YAML: {exc}. {_HINT}") from None
        except RecursionError:
            raise ValidationError(f"rule pack nests too deeply to be a rule pack. {_HINT}") from None
    raise ValidationError(f"unknown rule pack format {fmt!r}; use 'json' or 'yaml'")


def _loader_without_aliases(yaml: Any) -> Any:
    """A ``yaml.SafeLoader`` that refuses aliases (``*name``). A rule pack needs none, and nine
    lines of nested aliases expand to 387 million nodes: ``policy validate`` of such a file was
    still running a minute later (the nesting check and the canonical form walk every copy)."""

    class NoAliases(yaml.SafeLoader):  # type: ignore[misc]
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                alias = self.peek_event()
                raise ValidationError(
                    f"rule pack uses the YAML alias *{alias.anchor} (line "
                    f"{alias.start_mark.line + 1}): write the value out, aliases are not accepted. {_HINT}"
                )
            return super().compose_node(parent, index)

    return NoAliases


MAX_NESTING = 64
"""How deeply a rule pack's JSON may nest (a real pack nests about six levels)."""


def check_nesting(doc: Any, limit: int = MAX_NESTING) -> None:
    """Raise ValidationError if ``doc`` nests objects/arrays deeper than ``limit`` levels.

    Iterative, so it answers for any depth: a document parsed elsewhere (the edge's JSON body,
    which orjson accepts up to 1,024 levels) reached the recursive copy and checks of
    ``load_rule_pack`` and raised RecursionError there (a 500 at the edge)."""
    stack: list[tuple[Any, int]] = [(doc, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > limit:
            raise ValidationError(f"rule pack nests deeper than {limit} levels. {_HINT}")
        stack.extend((child, depth + 1) for child in children)


def _refuse_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValidationError(f"rule pack repeats the key {quoted(key)} in one object. {_HINT}")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValidationError(f"rule pack contains {name}, which JSON does not allow. {_HINT}")


def validate_document(doc: Any) -> None:
    """Refuse a document that breaks the schema or the semantic rules."""
    _check_finite(doc, doc, ())
    errors = sorted(
        _validator().iter_errors(doc),
        key=lambda error: (tuple(str(part) for part in error.absolute_path), error.message),
    )
    if errors:
        lines = [_describe(doc, error) for error in errors[:_MAX_REPORTED]]
        more = len(errors) - _MAX_REPORTED
        if more > 0:
            lines.append(f"... and {more} more")
        raise ValidationError("rule pack is invalid: " + "; ".join(lines) + ". " + _HINT)
    _check_semantics(doc)


def _check_finite(doc: Any, value: Any, path: tuple[str | int, ...]) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValidationError(
            f"rule pack is invalid: {_location(doc, list(path))}: {value} is not a finite number. {_HINT}"
        )
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(doc, item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_finite(doc, item, (*path, index))


def rule_label(doc: Any, index: int) -> str:
    """``rule 'id' (rules[i])`` when the rule has a string id, else ``rules[i]``."""
    try:
        rule_id = doc["rules"][index]["id"]
    except (KeyError, IndexError, TypeError):
        rule_id = None
    if isinstance(rule_id, str):
        return f"rule {quoted(rule_id, MAX_RULE_ID_CHARS + 2)} (rules[{index}])"
    return f"rules[{index}]"


def _describe(doc: Any, error: Any) -> str:
    path = list(error.absolute_path)
    if path == ["rules"] and error.validator == "minItems":
        return "the pack has no rules: add at least one rule"
    return f"{_location(doc, path)}: {_message(error)}"


def _message(error: Any) -> str:
    """jsonschema's message, its value quoted short: it starts with the ``repr`` of the value (a
    200,000-character string came back whole), and an unknown key is named in it."""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        extra = [key for key in error.instance if key not in known]
        named = ", ".join(quoted(key) for key in extra[:_MAX_KEYS_NAMED])
        if len(extra) > _MAX_KEYS_NAMED:
            named += f" and {len(extra) - _MAX_KEYS_NAMED} more"
        verb = "was" if len(extra) == 1 else "were"
        return f"Additional properties are not allowed ({named} {verb} unexpected)"
    message: str = error.message
    shown = repr(error.instance)
    if len(shown) > QUOTE_CHARS + 2 and message.startswith(shown):
        return quoted(error.instance) + message[len(shown) :]
    return message


def _location(doc: Any, path: list[Any]) -> str:
    """``rule 'id' (rules[2]).when.patterns[0]`` for a path inside a rule, else ``pack.x``."""
    where = "pack"
    rest = path
    if len(path) >= 2 and path[0] == "rules" and isinstance(path[1], int):
        where = rule_label(doc, path[1])
        rest = path[2:]
    for part in rest:
        if isinstance(part, int):
            where += f"[{part}]"
        else:  # a key of the pack's: a long one (unknown, refused) quoted short
            where += f".{part}" if len(str(part)) <= QUOTE_CHARS else f"[{quoted(str(part))}]"
    return where


def _check_semantics(doc: dict[str, Any]) -> None:
    thresholds = doc.get("thresholds", {})
    review, deny = thresholds.get("review"), thresholds.get("deny")
    if review is not None and deny is not None and review > deny:
        raise ValidationError(
            f"rule pack is invalid: thresholds.review ({review}) is above "
            f"thresholds.deny ({deny}); review must be <= deny. {_HINT}"
        )
    seen: dict[str, int] = {}
    for index, rule in enumerate(doc["rules"]):
        label = rule_label(doc, index)
        if rule["id"] in seen:
            raise ValidationError(
                f"rule pack is invalid: {label} repeats the id of rules[{seen[rule['id']]}]; "
                f"rule ids must be unique. {_HINT}"
            )
        seen[rule["id"]] = index
        when = rule["when"]
        low, high = when.get("min_length"), when.get("max_length")
        if low is not None and high is not None and low > high:
            raise ValidationError(
                f"rule pack is invalid: {label}.when: min_length {low} is above "
                f"max_length {high}, so the rule can never match. {_HINT}"
            )
        if rule["action"] == "redact" and not any(key in when for key in ("keywords", "patterns", "pii")):
            raise ValidationError(
                f"rule pack is invalid: {label} has action 'redact' but no keywords, "
                f"patterns or pii condition, so there is nothing to redact. {_HINT}"
            )
        tenants = when.get("tenant")
        if tenants is not None and doc["tenant"] != "*" and doc["tenant"] not in tenants:
            raise ValidationError(
                f"rule pack is invalid: {label}.when.tenant {_listed(tenants)} excludes the pack's "
                f"tenant {doc['tenant']!r}, so the rule can never match. {_HINT}"
            )


def _listed(items: list[Any]) -> str:
    """A list of the pack's for a message: whole while short, else only what it is (``quoted``)."""
    shown = str(items)
    return shown if len(shown) <= 4 * QUOTE_CHARS else quoted(items)


def invalid_pattern(label: str, index: int, pattern: str, problem: str) -> ValidationError:
    """The error for a pattern that does not compile or matches the empty string."""
    return ValidationError(
        f"rule pack is invalid: {label}.when.patterns[{index}] {quoted(pattern)}: {problem}. {_HINT}"
    )
