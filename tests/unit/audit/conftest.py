"""Hand-built logs for the audit's pure checks: turns, the decisions the policy agent would
write for them, and positions as if read from Kafka."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from ledgerflow.audit.decisions import PackBook
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.policy import TrainingState
from ledgerflow.policy.wire import decide, head_after
from ledgerflow.projections.ops import Position

T0 = 1_700_000_000_000_000
EVENTS = "conversation.events"
DECISIONS = "policy.decisions"
OFF = TrainingState(False, 0)


@dataclass
class Entry:
    at: Position
    event: Event
    value: bytes
    input_offset: int | None = None  # a decision's ``lf-input`` header: the input offset it answers


@dataclass
class HandLog:
    """Turns on partition 0 of conversation.events and their decisions on policy.decisions 0."""

    inputs: list[Entry] = field(default_factory=list)
    decisions: list[Entry] = field(default_factory=list)
    heads: dict = field(default_factory=dict)

    def turn(self, conversation: str, content: str, tenant: str = "acme", role: str = "user") -> Entry:
        n = len(self.inputs)
        event = new_event(
            "MessageSubmitted",
            tenant=tenant,
            subject=conversation,
            payload=MessageSubmitted(f"t{n}", role, content, "slm-1", None),
            producer="unit",
            occurred_at_micros=T0 + n,
        )
        entry = Entry(Position(EVENTS, 0, n), event, codec.encode(event))
        self.inputs.append(entry)
        return entry

    def decide(self, source: Entry, training: TrainingState = OFF) -> Entry:
        record = decide(
            source.event, source.value, builtin_default_pack(), training, self.heads.get(source.event.subject)
        )
        assert record is not None
        self.heads[source.event.subject] = head_after(record)
        return self.append_decision(record, input_offset=source.at.offset)

    def append_decision(
        self, record: Event, value: bytes | None = None, input_offset: int | None = None
    ) -> Entry:
        entry = Entry(
            Position(DECISIONS, 0, len(self.decisions)),
            record,
            codec.encode(record) if value is None else value,
            input_offset,
        )
        self.decisions.append(entry)
        return entry

    def replace_decision(self, index: int, record: Event) -> Entry:
        """The decision at ``index`` swapped for ``record`` at the same offset (an altered copy)."""
        old = self.decisions[index]
        entry = Entry(old.at, record, codec.encode(record), old.input_offset)
        self.decisions[index] = entry
        return entry


@pytest.fixture
def hand_log() -> HandLog:
    return HandLog()


@pytest.fixture
def packs() -> PackBook:
    return PackBook({}, builtin_default_pack())


@pytest.fixture
def with_payload() -> Callable[..., Event]:
    def change(record: Event, **fields: object) -> Event:
        return dataclasses.replace(record, payload=dataclasses.replace(record.payload, **fields))

    return change
