"""Model rules: a pack can deny turns to models the tenant's registry does not enable; the
decision records the registry version it read, and the auditor re-derives it from
``models.audit`` (a decision under a pack without model rules keeps its v1 bytes)."""

from __future__ import annotations

from typing import Any

from ledgerflow.audit.decisions import DecisionCheck, PackBook
from ledgerflow.audit.models import ModelsCheck
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted, PolicyDecision
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.models import ModelSettings, RegisterModel, SetModelEnabled, evolve, initial_registry
from ledgerflow.models import decide as decide_models
from ledgerflow.models.wire import record_of
from ledgerflow.policy import NO_MODELS, Action, ModelCatalog, TrainingState, Turn, evaluate, load_rule_pack
from ledgerflow.policy.wire import decide
from ledgerflow.projections.ops import Position

T0 = 1_700_000_000_000_000
OFF = TrainingState(False, 0)
GATE: dict[str, Any] = {
    "tenant": "acme",
    "version": 3,
    "rules": [
        {"id": "unregistered-model", "when": {"model_unavailable": True}, "action": "deny", "weight": 1}
    ],
}


def turn(model: str | None) -> Turn:
    return Turn("e-1", "acme", "c-1", "user", "hello", model)


def test_a_turn_to_an_unregistered_model_is_denied_and_a_registered_one_allowed() -> None:
    gate = load_rule_pack(GATE)
    catalog = ModelCatalog(version=2, enabled=frozenset({"slm-1"}))
    denied = evaluate(turn("gpt-x"), gate, OFF, models=catalog)
    allowed = evaluate(turn("slm-1"), gate, OFF, models=catalog)
    assert (denied.outcome, denied.matched_rules, denied.models_version) == (
        Action.DENY,
        ("unregistered-model",),
        2,
    )
    assert (allowed.outcome, allowed.matched_rules, allowed.models_version) == (Action.ALLOW, (), 2)


def test_without_a_registry_every_model_is_unavailable_and_a_turn_without_model_too() -> None:
    gate = load_rule_pack(GATE)
    assert evaluate(turn("slm-1"), gate, OFF).outcome is Action.DENY
    assert (
        evaluate(turn(None), gate, OFF, models=ModelCatalog(1, frozenset({"slm-1"}))).outcome is Action.DENY
    )


def test_model_unavailable_false_matches_only_enabled_models() -> None:
    doc = {
        **GATE,
        "rules": [{"id": "known", "when": {"model_unavailable": False}, "action": "review", "weight": 1}],
    }
    catalog = ModelCatalog(1, frozenset({"slm-1"}))
    assert evaluate(turn("slm-1"), load_rule_pack(doc), OFF, models=catalog).outcome is Action.REVIEW
    assert evaluate(turn("other"), load_rule_pack(doc), OFF, models=catalog).outcome is Action.ALLOW


def test_a_pack_without_model_rules_records_no_registry_version() -> None:
    decision = evaluate(turn("anything"), builtin_default_pack(), OFF, models=ModelCatalog(7, frozenset()))
    assert decision.models_version is None and "models_version" not in decision.to_dict()


def message(model: str) -> tuple[Event, bytes]:
    event = new_event(
        "MessageSubmitted",
        tenant="acme",
        subject="c-1",
        payload=MessageSubmitted("t1", "user", "hello", model, None),
        producer="unit",
        occurred_at_micros=T0,
    )
    return event, codec.encode(event)


def test_decisions_without_model_rules_stay_schema_v1_and_with_them_are_v2() -> None:
    event, value = message("slm-1")
    plain = decide(event, value, builtin_default_pack(), OFF, None, ModelCatalog(4, frozenset({"slm-1"})))
    gated = decide(event, value, load_rule_pack(GATE), OFF, None, ModelCatalog(4, frozenset({"slm-1"})))
    assert plain is not None and gated is not None
    assert plain.schema_version == 1 and "models_version" not in plain.to_json()["payload"]
    assert gated.schema_version == 2 and gated.to_json()["payload"]["models_version"] == 4
    again = codec.decode(codec.encode(plain))
    assert isinstance(again.payload, PolicyDecision) and again.payload.models_version is None


def registry_log() -> list[Event]:
    """models.audit of tenant acme: slm-1 registered (v1), then disabled (v2)."""
    registry, out = initial_registry("acme"), []
    settings = ModelSettings(provider="local", context_window=8192)
    commands = [
        RegisterModel(
            command_id="r",
            tenant="acme",
            actor="a",
            actor_roles=("admin",),
            model="slm-1",
            settings=settings,
            issued_at=T0,
        ),
        SetModelEnabled(
            command_id="d",
            tenant="acme",
            actor="a",
            actor_roles=("admin",),
            model="slm-1",
            enabled=False,
            issued_at=T0,
        ),
    ]
    for command in commands:
        for change in decide_models(registry, command, T0):
            registry = evolve(registry, change)
            out.append(record_of(change))
    return out


def test_the_auditor_re_derives_model_rule_decisions_from_models_audit() -> None:
    models = ModelsCheck()
    for n, record in enumerate(registry_log()):
        assert models.feed(Position("models.audit", 0, n), record) is None
    assert models.catalogs == {
        ("acme", 1): ModelCatalog(1, frozenset({"slm-1"})),
        ("acme", 2): ModelCatalog(2, frozenset()),
    }
    gate = load_rule_pack(GATE)
    book = PackBook({("acme", 3): gate}, builtin_default_pack())
    event, value = message("slm-1")
    honest = decide(event, value, gate, OFF, None, models.catalogs[("acme", 1)])
    assert honest is not None and isinstance(honest.payload, PolicyDecision)
    assert honest.payload.outcome == "allow"
    check = DecisionCheck(book, {}, models=models.catalogs)
    check.add_input(Position("conversation.events", 0, 0), event, value)
    assert check.feed(Position("policy.decisions", 0, 0), honest, codec.encode(honest)) == []
    assert check.verified == 1
    # the same decision claiming registry version 2 (slm-1 disabled) does not re-derive
    lying = decide(event, value, gate, OFF, None, ModelCatalog(2, frozenset({"slm-1"})))
    assert lying is not None
    check = DecisionCheck(book, {}, models=models.catalogs)
    check.add_input(Position("conversation.events", 0, 0), event, value)
    found = check.feed(Position("policy.decisions", 0, 0), lying, codec.encode(lying))
    assert [f.kind for f in found] == ["decision.altered"]


def test_the_auditor_flags_an_illegal_registry_transition() -> None:
    log = registry_log()
    models = ModelsCheck()
    found = models.feed(Position("models.audit", 0, 0), log[1])  # a disable before any registration
    assert found is not None and found.kind == "models.illegal" and "next version is 1" in found.detail
    assert NO_MODELS.version == 0
