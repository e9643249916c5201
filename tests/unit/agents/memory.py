"""In-memory ports for the agents' unit tests: a list for a log, a dict for the snapshot store.

Not a mock of Kafka or Redis: they hold records and answer the ports' questions
(``ledgerflow/agents/ports.py``); the Kafka and Redis adapters have their own integration tests.
"""

from __future__ import annotations

import dataclasses
import itertools
import uuid
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, replace
from io import BytesIO

import pytest
from fastavro import schemaless_writer

from ledgerflow.agents.layout import PartitionGuard
from ledgerflow.agents.output import LogNotReady, Outgoing, Written
from ledgerflow.agents.ports import Snapshot
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import MAGIC
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.payloads import DeadLetter, DisableTraining, EnableTraining, MessageSubmitted
from ledgerflow.contracts.registry import default_registry
from ledgerflow.errors import InfrastructureError
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


def chained(records: Sequence[Event], key: Callable[[Event], str] = lambda r: r.tenant) -> bool:
    """Each chain's records (grouped by ``key``, in log order) carry sequence 1, 2, … and each
    links to the previous one's hash."""
    chains: dict[str, list[Event]] = {}
    for record in records:
        chains.setdefault(key(record), []).append(record)
    for chain in chains.values():
        if [r.sequence for r in chain] != list(range(1, len(chain) + 1)):
            return False
        if any(b.prev_hash != a.hash for a, b in itertools.pairwise(chain)):
            return False
    return True


def command(
    n: int, tenant: str = "acme", *, enable: bool = True, ttl: int | None = None, command_id: str = ""
) -> Event:
    """A ``training.commands`` record as the edge writes it: enable (or disable) the lock."""
    kind = EnableTraining if enable else DisableTraining
    return new_event(
        kind.TYPE,
        tenant=tenant,
        subject=tenant,
        payload=kind(command_id or f"cmd-{tenant}-{n}", "admin-1", f"reason {n}", ttl, None),
        producer="edge:admin-1",
        occurred_at_micros=T0 + n,
    )


def unvalidated(event: Event, **payload: object) -> bytes:
    """``event``'s bytes with ``payload`` fields replaced, written by the wire schema alone: the
    envelope rules the producers enforce (token counts, lengths) are not checked."""
    entry = default_registry().get(event.type, event.schema_version)
    record = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "payload"}
    record["payload"] = event.payload.to_record() | payload
    out = BytesIO(MAGIC + entry.fingerprint)
    out.seek(0, 2)
    schemaless_writer(out, entry.wire, record)
    return out.getvalue()


class InputTopic:
    """The input topic: records appended per partition, read back by range."""

    def __init__(self, topic: str = TOPIC) -> None:
        self.topic = topic
        self.partitions: dict[int, list[Record]] = {}
        self.reads: list[tuple[int, int, int]] = []

    def append(self, partition: int, value: bytes, key: bytes | None) -> Record:
        log = self.partitions.setdefault(partition, [])
        record = Record(self.topic, partition, len(log), key, value)
        log.append(record)
        return record

    def add(self, partition: int, event: Event) -> Record:
        return self.append(partition, codec.encode(event), event.subject.encode())

    async def read(self, partition: int, start: int, end: int) -> Sequence[Record]:
        self.reads.append((partition, start, end))
        return [r for r in self.partitions.get(partition, []) if start <= r.offset < end]

    async def end(self, partition: int) -> int:
        return len(self.partitions.get(partition, []))


class OutputTopic:
    """The co-partitioned output: written in order, read back; ``fail_writes`` plays a broker down."""

    def __init__(self) -> None:
        self.partitions: dict[int, list[Written]] = {}
        self.keys: dict[int, list[bytes]] = {}
        self.fail_writes = False
        self.on_write: Callable[[], None] | None = None  # runs while a write waits for its acks
        self.visible: dict[int, int] = {}  # partition -> end offset the log reads as (a restarting broker)
        self.calls: list[tuple[str, int]] = []  # ("claim" | "end", partition), in order
        self.epochs: dict[int, int] = {}  # partition -> claims so far (FencedWriter)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def claim(self, partition: int) -> None:
        self.calls.append(("claim", partition))

    async def end(self, partition: int) -> int:
        self.calls.append(("end", partition))
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


class Fenced(InfrastructureError):
    """A write of a writer whose claim a later claim superseded (the broker's ``ProducerFenced``)."""


class FencedWriter:
    """One worker's writer of a shared ``OutputTopic``, fenced as the broker fences transactional
    producers (``kafka/fenced.py``): ``claim(p)`` bumps partition *p*'s epoch, and a write to *p*
    is refused unless this writer holds *p*'s current epoch. ``before_write`` runs first (a worker
    stalled before its send while another takes over)."""

    def __init__(self, topic: OutputTopic) -> None:
        self.topic = topic
        self.held: dict[int, int] = {}  # partition -> the epoch this writer's claim got
        self.before_write: Callable[[], Awaitable[None]] | None = None

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def claim(self, partition: int) -> None:
        await self.topic.claim(partition)
        self.held[partition] = self.topic.epochs[partition] = self.topic.epochs.get(partition, 0) + 1

    async def end(self, partition: int) -> int:
        return await self.topic.end(partition)

    def read(self, partition: int, start: int = 0, end: int | None = None) -> AsyncIterator[Written]:
        return self.topic.read(partition, start, end)

    async def write(self, records: Sequence[Outgoing]) -> list[int]:
        if self.before_write is not None:
            hook, self.before_write = self.before_write, None
            await hook()
        for p in sorted({r.partition for r in records}):
            if self.held.get(p) is None or self.held[p] != self.topic.epochs.get(p):
                self.held.pop(p, None)  # as FencedWriters releases a failed partition
                raise Fenced(f"output[{p}]: fenced by a later claim")
        return await self.topic.write(records)


class KeyedTopic:
    """An output topic partitioned by key (usage.windows): ``fail_writes`` plays a broker down,
    ``visible`` a partition that reads shorter than it is (a restarting broker)."""

    def __init__(self, partitions: int = 3) -> None:
        self.partitions: dict[int, list[Record]] = {p: [] for p in range(partitions)}
        self.fail_writes = False
        self.visible: dict[int, int] = {}
        self.calls: list[tuple[str, int]] = []  # ("claim", source) and ("read", -1), in order

    async def start(self) -> None:
        return None

    async def claim(self, source: int) -> None:
        self.calls.append(("claim", source))

    async def read(self) -> AsyncIterator[Record]:
        self.calls.append(("read", -1))
        for p, log in self.partitions.items():
            for record in log[: self.visible.get(p, len(log))]:
                yield record

    def placed(self, key: bytes | None, partition: int) -> bool:
        return key is not None and zlib.crc32(key) % len(self.partitions) == partition

    async def write(self, records: Sequence[tuple[int, bytes, bytes]]) -> list[tuple[int, int]]:
        if self.fail_writes:
            raise InfrastructureError("the broker is down")
        acked = []
        for _, key, value in records:
            p = zlib.crc32(key) % len(self.partitions)
            log = self.partitions[p]
            record = Record("usage.windows", p, len(log), key, value)
            log.append(record)
            acked.append((record.partition, record.offset))
        return acked

    def events(self) -> list[Event]:
        return [codec.decode(r.value or b"") for log in self.partitions.values() for r in log]


class HeadStore:
    """The chain-head snapshots: a dict; ``saves`` counts what was written."""

    def __init__(self) -> None:
        self.snapshots: dict[int, Snapshot] = {}
        self.saves: list[dict[int, Snapshot]] = []

    async def load(self, partition: int) -> Snapshot:
        found = self.snapshots.get(partition)
        return Snapshot() if found is None else replace(found, heads=dict(found.heads))

    async def save(self, snapshots: Mapping[int, Snapshot]) -> set[int]:
        if not snapshots:
            return set()
        self.saves.append(dict(snapshots))
        unsaved = set()
        for p, snap in snapshots.items():
            stored = self.snapshots.get(p)
            if not snap.complete and (
                stored is None or stored.out_offset < snap.base
            ):  # as the Redis adapter
                unsaved.add(p)
                continue
            current = self.snapshots.setdefault(p, Snapshot())
            if snap.out_offset < current.out_offset:  # as the Redis adapter: saves only move forward
                continue
            current.heads.update(snap.heads)
            current.last_input, current.out_offset = snap.last_input, snap.out_offset
        return unsaved

    async def drop(self, partition: int) -> None:
        self.snapshots.pop(partition, None)


class Reference:
    """Rule packs and training states held in memory (the built-in default pack)."""

    def __init__(self) -> None:
        self.packs: dict[str, RulePack] = {"*": builtin_default_pack()}
        self.catalogs: dict[str, ModelCatalog] = {}
        self.syncs = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
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
    """The dead-letter sink and its DLQ: a list; ``fail_reads`` plays a DLQ that cannot be read."""

    def __init__(self) -> None:
        self.sent: list[DeadLetter] = []
        self.fail_reads = False

    async def send_all(self, letters: Sequence[DeadLetter]) -> None:
        self.sent.extend(letters)

    async def dead_lettered(self, source_topic: str, partitions: AbstractSet[int]) -> dict[int, set[int]]:
        if self.fail_reads:
            raise InfrastructureError("the DLQ cannot be read")
        found: dict[int, set[int]] = {p: set() for p in partitions}
        for letter in self.sent:
            if letter.source_topic == source_topic and letter.partition in found:
                found[letter.partition].add(letter.offset)
        return found


def pinned(partitions: int = 3) -> PartitionGuard:
    """The guard of a worker that pinned ``partitions`` for its input (under 3, acme's home partition
    is 0 and globex's 1); a refusal raises instead of ending the process."""

    def refuse(problem: str) -> None:
        raise AssertionError(f"the worker would stop: {problem}")

    return PartitionGuard(partitions, refuse)


def retry_after_failed_write(
    output: OutputTopic,
    handle: Callable[[list[Record]], None],
    revoke: Callable[[set[int]], None],
    batch: list[Record],
) -> None:
    """``batch``'s write fails (the broker is down); its partitions' state is forgotten and the
    batch retried, as ``agents/app.py: handle_until_done`` does."""
    output.fail_writes = True
    with pytest.raises(LogNotReady):
        handle(batch)
    revoke({r.partition for r in batch})
    output.fail_writes = False
    handle(batch)
