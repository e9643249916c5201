"""What each default topic carries: key, writers, and the record types allowed on it.

Names, partitions and configs live in ``ledgerflow.topics``; actual names are
``LEDGERFLOW_TOPIC_PREFIX + base``; every topic has a ``<name>.dlq`` companion carrying
DeadLetter records.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledgerflow.topics import (
    CONVERSATION_EVENTS,
    POLICY_DECISIONS,
    POLICY_RULES,
    TRAINING_AUDIT,
    TRAINING_COMMANDS,
    USAGE_WINDOWS,
)


@dataclass(frozen=True, slots=True)
class TopicContract:
    name: str
    key: str
    types: frozenset[str]
    written_by: str
    description: str


CONTRACTS: tuple[TopicContract, ...] = (
    TopicContract(
        CONVERSATION_EVENTS,
        "conversation id",
        frozenset({"ConversationStarted", "MessageSubmitted", "ConversationClosed"}),
        "producers, the edge",
        "Every turn of every conversation.",
    ),
    TopicContract(
        POLICY_RULES,
        "tenant id (* = the default pack)",
        frozenset({"RulePackPublished"}),
        "admins via the edge or CLI",
        "Rule packs (constitutions); compacted: the latest pack per tenant is kept.",
    ),
    TopicContract(
        POLICY_DECISIONS,
        "conversation id",
        frozenset({"PolicyDecision"}),
        "policy agent only",
        "One decision per evaluated conversation event.",
    ),
    TopicContract(
        TRAINING_COMMANDS,
        "tenant id",
        frozenset({"EnableTraining", "DisableTraining"}),
        "the edge",
        "Requests to switch a tenant's training mode.",
    ),
    TopicContract(
        TRAINING_AUDIT,
        "tenant id",
        frozenset({"TrainingEnabled", "TrainingDisabled", "TrainingExpired", "TrainingRejected"}),
        "training agent only",
        "Outcome of every training command, and automatic expiries.",
    ),
    TopicContract(
        USAGE_WINDOWS,
        "tenant id",
        frozenset({"UsageWindow"}),
        "usage agent only",
        "Token usage per tenant, model and time window.",
    ),
)

INPUT_HEADER = "lf-input"
"""Header on every ``policy.decisions`` and ``training.audit`` record an input caused: the
offset (decimal ASCII) of that input in the co-partitioned input partition."""

TOPIC_TYPES: dict[str, frozenset[str]] = {spec.name: spec.types for spec in CONTRACTS}
"""Default topic base name -> record types allowed on it (``decode(allowed_types=...)``)."""
