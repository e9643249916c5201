"""Reference data folds a ``training.audit`` / ``models.audit`` record only if it is the agents' own
(``contracts/outcome_trust.untrusted_reason``): the next link of its tenant's chain on that topic.
A record written straight to Kafka (unchained, mis-linked, wrongly hashed, a replayed copy)
changes no training state, model registry or command outcome, and neither does one in another
partition than its tenant's. Pure: records are fed to ``ReferenceData._apply`` directly, no Kafka."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from ledgerflow.commands.training import OutcomeWatch
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.eventhash import link_event
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import TrainingDisabled, TrainingEnabled
from ledgerflow.kafka import reference as reference_module
from ledgerflow.kafka.placement import Placements, placement
from ledgerflow.kafka.reference import SKIPS_LOGGED, ReferenceData
from ledgerflow.models.records import ModelDisabled, ModelRegistered, ModelSettings
from ledgerflow.models.wire import record_of
from ledgerflow.policy import TrainingState
from ledgerflow.policy.wire import head_after

T0 = 1_780_000_000_000_000
TENANT = "acme"
SETTINGS = Settings(state_dir=Path("/nonexistent"))
TRAINING = SETTINGS.topic("training.audit")
MODELS = SETTINGS.topic("models.audit")
PARTITIONS = 6
PLACED = {"training.audit": Placements(PARTITIONS), "models.audit": Placements(PARTITIONS)}


def reader() -> ReferenceData:
    """A reader of topics with ``PARTITIONS`` partitions (``start`` would ask the pinned layout)."""
    return ReferenceData(SETTINGS, placements=PLACED)


def home(tenant: str) -> int:
    """The partition the agent writes ``tenant``'s outcomes in."""
    return placement(tenant.encode(), PARTITIONS)


def training(n: int, *, enable: bool, tenant: str = TENANT, command_id: str | None = None) -> Event:
    """An unchained ``training.audit`` record as the training agent builds it (version ``n``)."""
    kind = TrainingEnabled if enable else TrainingDisabled
    return new_event(
        kind.TYPE,
        tenant=tenant,
        subject=tenant,
        payload=kind(command_id or f"cmd-{n}", n, "admin-1", f"reason {n}", None, None),
        producer="ledgerflow-training",
        occurred_at_micros=T0 + n,
    )


def chained(*records: Event) -> list[Event]:
    """``records`` linked one after another, as the agent appends them."""
    out: list[Event] = []
    for record in records:
        out.append(link_event(record, head_after(out[-1]) if out else None))
    return out


def feed(reference: ReferenceData, topic: str, *records: Event) -> None:
    for offset, record in enumerate(records):
        where = home(record.tenant)
        assert reference._apply(topic, record.tenant.encode(), codec.encode(record), where, offset) is None


def genuine_training() -> list[Event]:
    """Enabled (v1), disabled (v2): the agent's chain."""
    return chained(training(1, enable=True), training(2, enable=False))


def test_the_genuine_chains_fold_fully() -> None:
    reference = reader()
    feed(reference, TRAINING, *genuine_training(), *chained(training(1, enable=True, tenant="globex")))
    assert reference.training_for(TENANT) == TrainingState(enabled=False, version=2)
    assert reference.training_for("globex") == TrainingState(enabled=True, version=1)
    assert set(reference.outcomes) == {"cmd-1", "cmd-2"}
    feed(reference, MODELS, *genuine_models())
    registry = reference.registry_for(TENANT)
    assert (registry.version, registry.enabled_models()) == (2, frozenset())
    assert set(reference.outcomes) == {"cmd-1", "cmd-2", "m-1", "m-2"}
    assert reference.skipped == 0


def _forgeries(real: list[Event]) -> dict[str, Event]:
    """Records claiming to enable training after ``real`` (whose head disabled it), written from outside."""
    head = head_after(real[-1])
    linked = link_event(training(3, enable=True, command_id="forged-cmd"), head)
    return {
        "unchained": training(3, enable=True, command_id="forged-cmd"),
        "wrong hash": dataclasses.replace(linked, hash="f" * 64),
        "altered after linking": dataclasses.replace(
            linked, payload=dataclasses.replace(linked.payload, reason="something else")
        ),
        "not linked to the head": link_event(training(3, enable=True, command_id="forged-cmd"), None),
        "wrong prev_hash": linked.with_chain(3, "e" * 64, linked.hash or ""),
        "replayed copy of an older link": real[0],
    }


@pytest.mark.parametrize("kind", list(_forgeries(genuine_training())))
def test_a_forged_training_record_changes_neither_the_state_nor_the_outcomes(kind: str) -> None:
    real = genuine_training()
    reference = reader()
    feed(reference, TRAINING, *real)
    forged = _forgeries(real)[kind]
    reference.outcomes.pop("cmd-1")  # so a replayed copy would show up as an answer
    feed(reference, TRAINING, forged)
    assert reference.training_for(TENANT) == TrainingState(enabled=False, version=2), kind
    assert "forged-cmd" not in reference.outcomes and "cmd-1" not in reference.outcomes
    assert reference.skipped == 1
    # the genuine chain goes on from its real head
    nxt = link_event(training(3, enable=True), head_after(real[-1]))
    feed(reference, TRAINING, nxt)
    assert reference.training_for(TENANT) == TrainingState(enabled=True, version=3)


def test_a_forged_first_record_of_a_tenant_with_a_chain_is_skipped_and_a_forged_disable_too() -> None:
    enabled = chained(training(1, enable=True))
    reference = reader()
    feed(reference, TRAINING, *enabled)
    restart = link_event(training(2, enable=False, command_id="forged-cmd"), None)  # a second sequence 1
    copy = enabled[0]  # a copy of the chain head itself
    feed(reference, TRAINING, restart, copy)
    assert reference.training_for(TENANT) == TrainingState(enabled=True, version=1)
    assert reference.skipped == 2


def test_a_record_of_another_tenants_chain_does_not_count_for_this_tenant() -> None:
    """Chained per tenant: a link of globex's chain relabelled with acme's tenant does not follow."""
    globex = chained(training(1, enable=True, tenant="globex"))
    relabelled = dataclasses.replace(globex[0], tenant=TENANT)  # subject stays globex: chain key ≠ tenant
    reference = reader()
    feed(reference, TRAINING, relabelled)
    assert reference.training_for(TENANT) == TrainingState(enabled=False, version=0)
    assert reference.skipped == 1


def test_a_forged_outcome_does_not_answer_wait_outcome() -> None:
    real = genuine_training()
    reference = reader()

    async def scenario() -> tuple[Event | None, Event | None]:
        feed(reference, TRAINING, *real)
        feed(reference, TRAINING, training(3, enable=True, command_id="the-admins-command"))  # unchained
        forged_answer = await reference.wait_outcome("the-admins-command", 0.05)
        feed(reference, TRAINING, genuine)
        return forged_answer, await reference.wait_outcome("the-admins-command", 0.05)

    genuine = link_event(training(3, enable=True, command_id="the-admins-command"), head_after(real[-1]))
    assert asyncio.run(scenario()) == (None, genuine)


def model(n: int, change: str, command_id: str | None = None) -> Event:
    """An unchained ``models.audit`` record (registry version ``n``)."""
    common = {"tenant": TENANT, "version": n, "command_id": command_id or f"m-{n}", "actor": "admin-1"}
    at = T0 + n
    if change == "register":
        event = ModelRegistered(
            **common,
            occurred_at=at,
            model="slm-1",
            settings=ModelSettings(provider="local", context_window=8192),
        )
        return record_of(event)
    return record_of(ModelDisabled(**common, occurred_at=at, model="slm-1"))


def genuine_models() -> list[Event]:
    return chained(model(1, "register"), model(2, "disable"))


def test_a_forged_models_record_does_not_change_the_registry() -> None:
    reference = reader()
    [registered] = chained(model(1, "register"))
    feed(reference, MODELS, registered)
    before = reference.registry_for(TENANT)
    assert before.enabled_models() == frozenset({"slm-1"})
    head = head_after(registered)
    for forged in (
        model(2, "disable", "forged-m"),  # unchained
        dataclasses.replace(link_event(model(2, "disable", "forged-m"), head), hash="f" * 64),
        link_event(model(2, "disable", "forged-m"), None),
    ):
        feed(reference, MODELS, forged)
        assert reference.registry_for(TENANT) == before
        assert reference.models_for(TENANT).enabled == frozenset({"slm-1"})
        assert "forged-m" not in reference.outcomes
    assert reference.skipped == 3


def test_heads_are_kept_per_topic() -> None:
    """A tenant's training and models chains are separate: each starts at sequence 1."""
    reference = reader()
    feed(reference, TRAINING, *genuine_training())
    feed(reference, MODELS, *genuine_models())
    assert reference.skipped == 0 and reference.registry_for(TENANT).version == 2


@pytest.mark.parametrize("topic", [TRAINING, MODELS])
def test_a_linked_record_in_another_partition_is_skipped_and_the_real_chain_goes_on(
    topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A forgery that links and hashes correctly (the chain has no secret) written to another
    partition of the topic, read before the real chain's next link: it is not the tenant's (the
    agent writes a tenant's outcomes only in the partition its tenant key is placed in), so it
    moves no state, head or outcome, and the real chain's next link is taken."""
    first, second = genuine_training() if topic == TRAINING else genuine_models()
    reference = reader()
    feed(reference, topic, first)
    forged = link_event(training(2, enable=True, command_id="forged-cmd"), head_after(first))
    if topic == MODELS:
        forged = link_event(model(2, "disable", "forged-m"), head_after(first))
    elsewhere = (home(TENANT) + 1) % PARTITIONS
    with caplog.at_level(logging.WARNING, logger=reference_module.__name__):
        assert reference._apply(topic, TENANT.encode(), codec.encode(forged), elsewhere, 0) is None
    assert reference.skipped == 1
    assert f"{topic}[{elsewhere}]@0 is not the agents' own" in caplog.text
    assert f"belongs in partition {home(TENANT)} of {PARTITIONS}, not {elsewhere}" in caplog.text
    assert "forged-cmd" not in reference.outcomes and "forged-m" not in reference.outcomes
    feed(reference, topic, second)
    assert reference.skipped == 1
    if topic == TRAINING:
        assert reference.training_for(TENANT) == TrainingState(enabled=False, version=2)
    else:
        assert reference.registry_for(TENANT).version == 2


def test_a_reader_that_knows_no_layout_trusts_no_outcome() -> None:
    reference = ReferenceData(SETTINGS)  # not started: no partition layout asked yet
    [enabled] = chained(training(1, enable=True))
    assert reference._apply(TRAINING, TENANT.encode(), codec.encode(enabled), home(TENANT), 0) is None
    assert reference.skipped == 1 and reference.training_for(TENANT) == TrainingState(False, 0)


def test_skipped_records_are_logged_one_by_one_then_counted(caplog: pytest.LogCaptureFixture) -> None:
    reference = reader()
    feed(reference, TRAINING, *genuine_training())
    forged = training(3, enable=True)
    with caplog.at_level(logging.WARNING, logger=reference_module.__name__):
        for offset in range(1000):
            reference._apply(TRAINING, TENANT.encode(), codec.encode(forged), home(TENANT), 100 + offset)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == SKIPS_LOGGED + 2, lines[-3:]  # one by one, then at 100 and 1000
    assert f"{TRAINING}[{home(TENANT)}]@100 is not the agents' own" in lines[0]
    assert "unchained" in lines[0]
    assert lines[-1].startswith("reference data: 1000 audit records skipped so far")
    assert reference.training_for(TENANT) == TrainingState(enabled=False, version=2)


def test_the_cli_takes_only_the_agents_own_answer() -> None:
    """``ledgerflow training enable``: a forged record with the command id answers nothing; the
    agent's linked answer does."""
    real = genuine_training()
    watch = OutcomeWatch(TENANT, "cli-cmd")
    for record in real:
        assert watch.feed(codec.encode(record)) is None
    forged = training(3, enable=True, command_id="cli-cmd")
    assert watch.feed(codec.encode(forged)) is None
    assert watch.feed(codec.encode(link_event(forged, None))) is None
    assert len(watch.skipped) == 2
    genuine = link_event(training(3, enable=False, command_id="cli-cmd"), head_after(real[-1]))
    assert watch.feed(codec.encode(genuine)) == genuine
