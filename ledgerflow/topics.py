"""The one topic table: every topic ledgerflow uses, its partitions and configs, and its
contract (key, the record types allowed on it, who writes it). Actual names are
``LEDGERFLOW_TOPIC_PREFIX + base``; every topic has a ``<name>.dlq`` companion carrying
DeadLetter records.

Topics are created idempotently at start (never by broker auto-creation).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

CONVERSATION_EVENTS = "conversation.events"
POLICY_RULES = "policy.rules"
POLICY_DECISIONS = "policy.decisions"
TRAINING_COMMANDS = "training.commands"
TRAINING_AUDIT = "training.audit"
USAGE_WINDOWS = "usage.windows"
MODELS_COMMANDS = "models.commands"
MODELS_AUDIT = "models.audit"
IDENTITY_AUDIT = "identity.audit"

DLQ_SUFFIX = ".dlq"

AGENT_WRITTEN = frozenset({POLICY_DECISIONS, TRAINING_AUDIT, USAGE_WINDOWS, MODELS_AUDIT, IDENTITY_AUDIT})
"""The topics only ledgerflow's own processes write (the agents; ``identity.audit`` the edge): a
record there that does not decode is an audit finding, and ``dlq replay`` puts nothing back there
(a record it wrote would be one no agent wrote)."""

WORKER_GROUP = "ledgerflow-worker"
"""After the topic prefix: the consumer group of the workers' hot path (agents/batchloop.py)."""
LAYOUT_GROUP_SUFFIX = ".layout"
"""After the worker group's name: the group keeping its pinned partition layout (agents/layout.py)."""

INPUT_HEADER = "lf-input"
"""Header on every ``policy.decisions`` and ``training.audit`` record an input caused: the
offset (decimal ASCII) of that input in the co-partitioned input partition."""

MAX_OFFSET_DIGITS = 19  # a Kafka offset is a signed 64-bit number


def input_offset_of(headers: object) -> int | None:
    """The ``lf-input`` header's offset; None when there is none or it is not a decimal offset
    (a record not written by an agent). The agents' recovery and the audit read it alike."""
    for name, value in headers or ():  # type: ignore[attr-defined]
        if name == INPUT_HEADER:
            ok = isinstance(value, bytes) and value.isascii() and value.isdigit()
            return int(value) if ok and len(value) <= MAX_OFFSET_DIGITS else None
    return None


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One topic: its layout (partitions, configs) and its contract (key, record types, writers)."""

    base: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    key: str = ""
    types: frozenset[str] = frozenset()
    written_by: str = ""
    description: str = ""


_KEEP_FOREVER = {"retention.ms": "-1", "cleanup.policy": "delete"}

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        CONVERSATION_EVENTS,
        6,
        _KEEP_FOREVER,
        "conversation id",
        frozenset({"ConversationStarted", "MessageSubmitted", "ConversationClosed"}),
        "producers, the edge",
        "Every turn of every conversation.",
    ),
    # Kept forever, never compacted: a decision names its pack (tenant, version, constitution
    # hash) and decisions are kept forever, so every signed version must stay to re-derive them.
    TopicSpec(
        POLICY_RULES,
        1,
        _KEEP_FOREVER,
        "tenant id (* = the default pack)",
        frozenset({"RulePackPublished"}),
        "admins via the edge or CLI (signed: docs/policy.md)",
        "Signed rule packs (constitutions); every version is kept as long as the decisions naming it.",
    ),
    TopicSpec(
        POLICY_DECISIONS,
        6,
        _KEEP_FOREVER,
        "conversation id",
        frozenset({"PolicyDecision"}),
        "policy agent only",
        "One decision per evaluated conversation event.",
    ),
    TopicSpec(
        TRAINING_COMMANDS,
        3,
        _KEEP_FOREVER,
        "tenant id",
        frozenset({"EnableTraining", "DisableTraining"}),
        "the edge",
        "Requests to switch a tenant's training mode.",
    ),
    TopicSpec(
        TRAINING_AUDIT,
        3,
        _KEEP_FOREVER,
        "tenant id",
        frozenset({"TrainingEnabled", "TrainingDisabled", "TrainingExpired", "TrainingRejected"}),
        "training agent only",
        "Outcome of every training command, and automatic expiries.",
    ),
    TopicSpec(
        USAGE_WINDOWS,
        3,
        _KEEP_FOREVER,
        "tenant id",
        frozenset({"UsageWindow"}),
        "usage agent only",
        "Token usage per tenant, model and time window.",
    ),
    TopicSpec(
        MODELS_COMMANDS,
        3,
        _KEEP_FOREVER,
        "tenant id",
        frozenset({"RegisterModel", "SetModelEnabled"}),
        "the edge",
        "Requests to change a tenant's model registry (admins).",
    ),
    TopicSpec(
        MODELS_AUDIT,
        3,
        _KEEP_FOREVER,
        "tenant id",
        frozenset({"ModelRegistered", "ModelEnabled", "ModelDisabled", "ModelRejected"}),
        "models agent only",
        "Outcome of every model-registry command: the registry's event log.",
    ),
    TopicSpec(
        IDENTITY_AUDIT,
        1,
        _KEEP_FOREVER,
        "chain id: issuer:<name> (keys, mints) or edge:<id> (refusal counts)",
        frozenset({"SigningKeyChanged", "TokenMinted", "AuthRefusals"}),
        "the dev issuer (stack up, keys rotate, token) and every edge",
        "Identity audit trail, chained per key: key lifecycle, dev token mints, refused authentications.",
    ),
)

TOPIC_TYPES: dict[str, frozenset[str]] = {spec.base: spec.types for spec in TOPICS}
"""Default topic base name -> record types allowed on it (``decode(allowed_types=...)``)."""

DLQ_TOPICS: tuple[TopicSpec, ...] = tuple(TopicSpec(t.base + DLQ_SUFFIX, 1, _KEEP_FOREVER) for t in TOPICS)


def all_topics() -> tuple[TopicSpec, ...]:
    return TOPICS + DLQ_TOPICS


def dlq_of(topic: str) -> str:
    return topic + DLQ_SUFFIX


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) on a cluster of ``brokers``: 3 and 2 from three
    brokers on, so one broker may be down while every ``acks=all`` write still succeeds; on
    fewer, every broker holds a copy and one in-sync copy is enough (the single-node stack)."""
    factor = min(3, max(1, brokers))
    return factor, 2 if factor >= 3 else 1


def with_partitions(specs: tuple[TopicSpec, ...], partitions: int | None) -> tuple[TopicSpec, ...]:
    """``specs`` with every multi-partition topic at ``partitions`` (None: as declared).

    All of them change together so co-partitioned topics (events and decisions, commands and
    audit) stay equal; single-partition topics (rule packs, dead letters) stay single.
    """
    if partitions is None:
        return specs
    if partitions < 1:
        raise ValueError(f"--partitions must be at least 1, not {partitions}")
    return tuple(replace(s, partitions=partitions) if s.partitions > 1 else s for s in specs)
