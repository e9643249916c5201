"""What a projection asks Redis to do, as data: pure functions return these, the writer applies them.

The ops are built about twenty times per turn on the hot path, so they are plain slotted
dataclasses, not frozen ones: a frozen dataclass's ``__init__`` sets each field through
``object.__setattr__``, about twice the cost (measured: 516 ns against 223 ns for a
``RedisOp``). Nothing mutates them; treat them as values. They compare by value and are not
hashable (nothing keys a dict by them). ``Position``, one per record and used as a key, stays
frozen.
"""

from __future__ import annotations

from dataclasses import dataclass

# The commands a projection may use, and how many arguments each takes after the key.
COMMANDS: dict[str, int | None] = {
    "HSET": None,  # field value [field value ...]
    "HINCRBY": 2,
    "HINCRBYFLOAT": 2,
    "RPUSH": None,
    "LPUSH": None,
    "LTRIM": 2,
    "SET": 1,
    "INCRBY": 1,
    "ZADD": 2,
    "ZREMRANGEBYRANK": 2,
    "DEL": 0,
}


@dataclass(frozen=True, slots=True)
class Position:
    """Where a record sits in Kafka."""

    topic: str
    partition: int
    offset: int

    @property
    def cursor(self) -> str:
        return f"{self.topic}:{self.partition}"


@dataclass(slots=True)
class RedisOp:
    command: str
    key: str
    args: tuple[str | int | float, ...] = ()

    def __post_init__(self) -> None:
        arity = COMMANDS.get(self.command, -1)
        if arity == -1:
            raise ValueError(f"projection op {self.command} is not allowed")
        if arity is not None and len(self.args) != arity:
            raise ValueError(f"{self.command} takes {arity} arguments, got {len(self.args)}")


@dataclass(slots=True)
class Once:
    """Apply a record's ops only if ``member`` is not in the hash ``key`` yet; applied, it adds it.

    Deduplicates by identity rather than position: the same event delivered twice (two
    offsets, one ``event_id``) is counted once. Only a record that is applied claims its
    identity: one its ``ChainLink`` refuses (a decision for a real turn written from outside,
    linked to nothing) leaves the turn to its genuine decision.
    """

    key: str
    member: str


@dataclass(slots=True)
class ChainLink:
    """Apply a chained record's ops only if it links to the last record projected of its chain.

    ``head_key`` is a hash holding, in field ``copy``, ``"<sequence> <hash>"`` of the chain's
    last projected record (each group of a record keeps its own copy, so a crash between two
    groups of one record leaves each copy consistent with its own fence). A record that does
    not link is recorded in ``quarantine_key`` (``cursor@offset`` → reason) instead.
    """

    head_key: str
    copy: str
    sequence: int
    prev_hash: str
    hash: str
    quarantine_key: str


@dataclass(slots=True)
class FencedOps:
    """Ops on one entity's keys (one Redis Cluster slot), applied at most once per record.

    ``fence_key`` holds, per ``topic:partition``, the last offset applied to this entity;
    the writer applies ``ops`` only if the record's offset is above it, and moves the fence
    in the same atomic step. ``once`` and ``link`` are further conditions checked in that
    step (a record refused by them still moves the fence: it was consumed, not applied).
    """

    fence_key: str
    position: Position
    ops: tuple[RedisOp, ...]
    once: Once | None = None
    link: ChainLink | None = None
