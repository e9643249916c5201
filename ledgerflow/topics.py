"""The topics ledgerflow uses, with explicit partition counts and configs.

Topics are created idempotently at start (never by broker auto-creation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

CONVERSATION_EVENTS = "conversation.events"
POLICY_RULES = "policy.rules"
POLICY_DECISIONS = "policy.decisions"
TRAINING_COMMANDS = "training.commands"
TRAINING_AUDIT = "training.audit"
USAGE_WINDOWS = "usage.windows"

DLQ_SUFFIX = ".dlq"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    base: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


_KEEP_FOREVER = {"retention.ms": "-1", "cleanup.policy": "delete"}

TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(CONVERSATION_EVENTS, 6, _KEEP_FOREVER),
    # Compacted (latest pack per tenant wins), but only after a year: until then every
    # version stays in the log, so any decision of the last year re-derives from its pack.
    TopicSpec(
        POLICY_RULES, 1, {"cleanup.policy": "compact", "min.compaction.lag.ms": str(365 * 24 * 3600 * 1000)}
    ),
    TopicSpec(POLICY_DECISIONS, 6, _KEEP_FOREVER),
    TopicSpec(TRAINING_COMMANDS, 3, _KEEP_FOREVER),
    TopicSpec(TRAINING_AUDIT, 3, _KEEP_FOREVER),
    TopicSpec(USAGE_WINDOWS, 3, _KEEP_FOREVER),
)

DLQ_TOPICS: tuple[TopicSpec, ...] = tuple(TopicSpec(t.base + DLQ_SUFFIX, 1, _KEEP_FOREVER) for t in TOPICS)


def all_topics() -> tuple[TopicSpec, ...]:
    return TOPICS + DLQ_TOPICS


def dlq_of(topic: str) -> str:
    return topic + DLQ_SUFFIX
