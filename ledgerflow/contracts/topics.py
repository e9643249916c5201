"""Default topics: base names, keys, writers, and which record types each carries.

Actual names are ``LEDGERFLOW_TOPIC_PREFIX + base``; every topic has a ``<name>.dlq``
companion carrying DeadLetter records.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TopicSpec:
    name: str
    key: str
    types: frozenset[str]
    written_by: str
    description: str
    compacted: bool = False


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        "conversation.events",
        "conversation id",
        frozenset({"ConversationStarted", "MessageSubmitted", "ConversationClosed"}),
        "producers, the edge",
        "Every turn of every conversation.",
    ),
    TopicSpec(
        "policy.rules",
        "tenant id (* = the default pack)",
        frozenset({"RulePackPublished"}),
        "admins via the edge or CLI",
        "Rule packs (constitutions); compacted: the latest pack per tenant is kept.",
        compacted=True,
    ),
    TopicSpec(
        "policy.decisions",
        "conversation id",
        frozenset({"PolicyDecision"}),
        "policy agent only",
        "One decision per evaluated conversation event.",
    ),
    TopicSpec(
        "training.commands",
        "tenant id",
        frozenset({"EnableTraining", "DisableTraining"}),
        "the edge",
        "Requests to switch a tenant's training mode.",
    ),
    TopicSpec(
        "training.audit",
        "tenant id",
        frozenset({"TrainingEnabled", "TrainingDisabled", "TrainingExpired", "TrainingRejected"}),
        "training agent only",
        "Outcome of every training command, and automatic expiries.",
    ),
    TopicSpec(
        "usage.windows",
        "tenant id",
        frozenset({"UsageWindow"}),
        "usage agent only",
        "Token usage per tenant, model and time window.",
    ),
)

TOPIC_TYPES: dict[str, frozenset[str]] = {spec.name: spec.types for spec in TOPICS}
"""Default topic base name -> record types allowed on it (``decode(allowed_types=...)``)."""

DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX
