"""The model registry aggregate: register, disable/enable, optimistic concurrency, refusals,
legality for the auditor, and the wire round trip."""

from __future__ import annotations

import dataclasses

import pytest

from ledgerflow.contracts import codec
from ledgerflow.errors import ValidationError
from ledgerflow.models import (
    INVALID_SETTINGS,
    NO_CHANGE,
    NOT_ADMIN,
    UNKNOWN_MODEL,
    VERSION_CONFLICT,
    ModelDisabled,
    ModelEnabled,
    ModelEvent,
    ModelRegistered,
    ModelRegistry,
    ModelRejected,
    ModelSettings,
    RegisterModel,
    SetModelEnabled,
    check_transition,
    decide,
    evolve,
    fold,
    initial_registry,
)
from ledgerflow.models.wire import command_of, event_of, record_of

T0 = 1_700_000_000_000_000
SLM = ModelSettings(provider="local", context_window=8192, input_price_per_1k=0.5, output_price_per_1k=1.5)


def register(model: str = "slm-1", settings: ModelSettings = SLM, **overrides: object) -> RegisterModel:
    fields: dict[str, object] = {
        "command_id": f"reg-{model}",
        "tenant": "acme",
        "actor": "ann",
        "actor_roles": ("admin",),
        "model": model,
        "settings": settings,
        "issued_at": T0,
    }
    fields.update(overrides)
    return RegisterModel(**fields)  # type: ignore[arg-type]


def switch(enabled: bool, model: str = "slm-1", **overrides: object) -> SetModelEnabled:
    fields: dict[str, object] = {
        "command_id": f"set-{model}-{enabled}",
        "tenant": "acme",
        "actor": "ann",
        "actor_roles": ("admin",),
        "model": model,
        "enabled": enabled,
        "issued_at": T0,
    }
    fields.update(overrides)
    return SetModelEnabled(**fields)  # type: ignore[arg-type]


def run(*commands: RegisterModel | SetModelEnabled) -> tuple[ModelRegistry, list[ModelEvent]]:
    registry, log = initial_registry("acme"), []
    for index, command in enumerate(commands):
        for event in decide(registry, command, T0 + index):
            log.append(event)
            registry = evolve(registry, event)
    return registry, log


def test_register_then_disable_then_enable() -> None:
    registry, log = run(register(), switch(False), switch(True))
    assert [type(e) for e in log] == [ModelRegistered, ModelDisabled, ModelEnabled]
    assert registry.version == 3
    assert registry.models["slm-1"] == SLM
    assert registry.enabled_models() == {"slm-1"}


def test_disabled_model_keeps_its_settings_and_leaves_the_enabled_set() -> None:
    registry, _ = run(
        register(), register("big", ModelSettings(provider="acme-ai", context_window=128_000)), switch(False)
    )
    assert registry.enabled_models() == {"big"}
    assert registry.models["slm-1"] == dataclasses.replace(SLM, enabled=False)
    assert registry.providers() == {"acme-ai": ["big"], "local": ["slm-1"]}


def test_registering_again_replaces_the_settings_as_a_new_version() -> None:
    cheaper = dataclasses.replace(SLM, input_price_per_1k=0.1)
    registry, _ = run(register(), register(settings=cheaper, command_id="again"))
    assert (registry.version, registry.models["slm-1"].input_price_per_1k) == (2, 0.1)


@pytest.mark.parametrize(
    ("commands", "code"),
    [
        ((register(actor_roles=("producer",)),), NOT_ADMIN),
        ((register(), register("b", expected_version=0)), VERSION_CONFLICT),
        ((switch(False),), UNKNOWN_MODEL),
        ((register(), switch(True)), NO_CHANGE),
        ((register(), switch(False), switch(False, command_id="x")), NO_CHANGE),
        ((register(settings=dataclasses.replace(SLM, context_window=0)),), INVALID_SETTINGS),
        ((register(settings=dataclasses.replace(SLM, input_price_per_1k=-1.0)),), INVALID_SETTINGS),
        ((register(settings=dataclasses.replace(SLM, output_price_per_1k=float("nan"))),), INVALID_SETTINGS),
        # Finite, but tokens x price overflowed to infinity: every usage read of the tenant was a 500.
        ((register(settings=dataclasses.replace(SLM, input_price_per_1k=1e308)),), INVALID_SETTINGS),
        ((register(settings=dataclasses.replace(SLM, provider=" ")),), INVALID_SETTINGS),
        ((register(model="bad\nid"),), INVALID_SETTINGS),
        ((register(settings=dataclasses.replace(SLM, context_window=True)),), INVALID_SETTINGS),
    ],
)
def test_refusals_record_the_unchanged_version(
    commands: tuple[RegisterModel | SetModelEnabled, ...], code: str
) -> None:
    before, _ = run(*commands[:-1])
    registry, log = run(*commands)
    assert isinstance(log[-1], ModelRejected) and log[-1].code == code, log[-1]
    assert log[-1].version == before.version
    assert registry == before


def test_expected_version_equal_to_the_current_one_is_accepted() -> None:
    registry, log = run(register(), switch(False, expected_version=1))
    assert isinstance(log[-1], ModelDisabled) and registry.version == 2


def test_a_command_of_another_tenant_is_a_wiring_bug() -> None:
    with pytest.raises(ValidationError, match="tenant"):
        decide(initial_registry("other"), register(), T0)


def test_check_transition_names_illegal_events() -> None:
    empty = initial_registry("acme")
    registered, _ = run(register())
    enabled = ModelEnabled(tenant="acme", version=2, command_id="c", actor="a", model="slm-1", occurred_at=T0)
    assert "not registered" in (check_transition(empty, dataclasses.replace(enabled, version=1)) or "")
    assert "already enabled" in (check_transition(registered, enabled) or "")
    assert "next version" in (check_transition(registered, dataclasses.replace(enabled, version=5)) or "")
    assert "tenant" in (check_transition(initial_registry("other"), enabled) or "")
    with pytest.raises(ValidationError, match="#0"):
        fold([enabled])


def test_fold_replays_a_log_to_the_same_registry() -> None:
    registry, log = run(register(), switch(False), register("b", command_id="rb"), switch(True))
    assert fold(log) == registry


def test_wire_round_trip_of_commands_and_events() -> None:
    _, log = run(register(), switch(False), switch(False, command_id="again"))
    for event in log:
        record = codec.decode(
            codec.encode(record_of(event, trace_id="00-" + "a" * 32 + "-" + "b" * 16 + "-01"))
        )
        assert event_of(record) == event
    # what the edge would publish decodes to the command it stands for
    from ledgerflow.contracts.events import new_event
    from ledgerflow.contracts.payloads import RegisterModel as RegisterRecord

    wire = new_event(
        "RegisterModel",
        tenant="acme",
        subject="acme",
        payload=RegisterRecord("reg-slm-1", "ann", "slm-1", "local", 8192, 0.5, 1.5, True, None),
        producer="edge:ann",
        occurred_at_micros=T0,
    )
    assert command_of(codec.decode(codec.encode(wire))) == register()
    assert command_of(wire, admin=False).actor_roles == ()
