"""In-memory ports for the agents' unit tests: a list for a log, a dict for the snapshot store.

Not a mock of Kafka or Redis: they hold records and answer the ports' questions
(``ledgerflow/agents/ports.py``); the Kafka and Redis adapters have their own integration tests.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from ledgerflow.agents.output import LogNotReady, Outgoing, Written
from ledgerflow.agents.ports import Snapshot
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import DeadLetter, MessageSubmitted
from ledgerflow.contracts.registry import default_registry
from ledgerflow.kafka.reference import OFF, builtin_default_pack
from ledgerflow.policy import NO_MODELS, ModelCatalog, RulePack, TrainingState

T0 = 1_780_000_000_000_000
TOPIC = "conversation.events"


@dataclass(frozen=True, slots=True)
class Record:
    """A record as faust delivers it (the attributes the agents read)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


def turn(conv: str, n: int, content: str = "hello", tenant: str = "acme") -> Event:
    return Event(
        event_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"{conv}/{n}")),
        type="MessageSubmitted",
        schema_version=default_registry().latest("MessageSubmitted").version,
        tenant=tenant,
        subject=conv,
        occurred_at=T0 + n,
        producer="gateway",
        payload=MessageSubmitted(turn_id=f"t-{n}", role="user", content=content, model="slm-1", tokens=3),
    )


class InputTopic:
    """The input topic: records appended per partition, read back by range."""

    def __init__(self) -> None:
        self.partitions: dict[int, list[Record]] = {}
        self.reads: list[tuple[int, int, int]] = []

    def append(self, partition: int, value: bytes, key: bytes | None) -> Record:
        log = self.partitions.setdefault(partition, [])
        record = Record(TOPIC, partition, len(log), key, value)
        log.append(record)
        return record

    def add(self, partition: int, event: Event) -> Record:
        return self.append(partition, codec.encode(event), event.subject.encode())

    async def read(self, partition: int, start: int, end: int) -> Sequence[Record]:
        self.reads.append((partition, start, end))
        return [r for r in self.partitions.get(partition, []) if start <= r.offset < end]


class OutputTopic:
    """The co-partitioned output: written in order, read back; ``fail_writes`` plays a broker down."""

    def __init__(self) -> None:
        self.partitions: dict[int, list[Written]] = {}
        self.keys: dict[int, list[bytes]] = {}
        self.fail_writes = False
        self.on_write: Callable[[], None] | None = None  # runs while a write waits for its acks
        self.visible: dict[int, int] = {}  # partition -> end offset the log reads as (a restarting broker)

    async def start(self) -> None:
        return None

    async def end(self, partition: int) -> int:
        return self.visible.get(partition, len(self.partitions.get(partition, [])))

    async def read(self, partition: int, start: int = 0, end: int | None = None) -> AsyncIterator[Written]:
        stop = await self.end(partition) if end is None else end
        for written in self.partitions.get(partition, [])[start:stop]:
            yield written

    async def write(self, records: Sequence[Outgoing]) -> list[int]:
        if self.fail_writes:
            raise LogNotReady("the broker is down")
        if self.on_write is not None:
            self.on_write()
        offsets = []
        for r in records:
            log = self.partitions.setdefault(r.partition, [])
            offsets.append(len(log))
            log.append(Written(len(log), r.value, r.input_offset))
            self.keys.setdefault(r.partition, []).append(r.key)
        return offsets

    def decisions(self, partition: int) -> list[Event]:
        return [codec.decode(w.value) for w in self.partitions.get(partition, [])]


class HeadStore:
    """The chain-head snapshots: a dict; ``saves`` counts what was written."""

    def __init__(self) -> None:
        self.snapshots: dict[int, Snapshot] = {}
        self.saves: list[dict[int, Snapshot]] = []

    async def load(self, partition: int) -> Snapshot:
        found = self.snapshots.get(partition)
        return Snapshot() if found is None else replace(found, heads=dict(found.heads))

    async def save(self, snapshots: Mapping[int, Snapshot]) -> None:
        if not snapshots:
            return
        self.saves.append(dict(snapshots))
        for p, snap in snapshots.items():
            current = self.snapshots.setdefault(p, Snapshot())
            current.heads.update(snap.heads)
            current.last_input, current.out_offset = snap.last_input, snap.out_offset


class Reference:
    """Rule packs and training states held in memory (the built-in default pack)."""

    def __init__(self) -> None:
        self.packs: dict[str, RulePack] = {"*": builtin_default_pack()}
        self.catalogs: dict[str, ModelCatalog] = {}
        self.syncs = 0

    async def start(self) -> None:
        return None

    async def sync(self) -> None:
        self.syncs += 1

    def pack_for(self, tenant: str) -> RulePack:
        return self.packs.get(tenant) or self.packs["*"]

    def training_for(self, tenant: str) -> TrainingState:
        return OFF

    def models_for(self, tenant: str) -> ModelCatalog:
        return self.catalogs.get(tenant, NO_MODELS)


class Letters:
    """The dead-letter sink: a list."""

    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []

    async def send_all(self, letters: Sequence[DeadLetter]) -> None:
        self.sent.extend(letters)
