"""Redis key names of the read models.

Every key of one conversation shares the hash tag ``{tenant/conversation}`` and every key
of one tenant shares ``{tenant}``, so each entity lives in one Redis Cluster slot and the
fenced Lua writes run unchanged on a cluster. ``namespace`` carries the projection name
and version (``lf:rm:v1:``): a rebuild writes a fresh namespace and readers switch.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

DEFAULT_GENERATION = "v1"
DEFAULT_NAMESPACE = f"lf:rm:{DEFAULT_GENERATION}:"
FENCE_SUFFIX = ":applied"


def generations_base(topic_prefix: str) -> str:
    """What every key of a topic prefix's read models starts with: the pointer, then each
    generation's space ``<base><generation>:``."""
    return f"lf:{topic_prefix}rm:"


def active_pointer(topic_prefix: str) -> str:
    """The key naming the generation readers and the projector use (absent = ``v1``)."""
    return generations_base(topic_prefix) + "active"


@functools.lru_cache(maxsize=1 << 16)  # a replay names the same few thousand ids over and over
def _id(value: str) -> str:
    """Escape the characters that would merge two ids or break a hash tag."""
    return value.replace("%", "%25").replace("/", "%2F").replace("{", "%7B").replace("}", "%7D")


@dataclass(frozen=True, slots=True)
class Keys:
    namespace: str = DEFAULT_NAMESPACE

    @classmethod
    def for_prefix(cls, topic_prefix: str, generation: str = DEFAULT_GENERATION) -> Keys:
        """The key space of one generation of a topic prefix's read models."""
        return cls(f"{generations_base(topic_prefix)}{generation}:")

    @property
    def generation(self) -> str:
        return self.namespace.rstrip(":").rsplit(":", 1)[-1]

    def conversation(self, tenant: str, conversation_id: str) -> str:
        return f"{self.namespace}conv:{{{_id(tenant)}/{_id(conversation_id)}}}"

    def conversation_turns(self, tenant: str, conversation_id: str) -> str:
        return self.conversation(tenant, conversation_id) + ":turns"

    def conversation_decisions(self, tenant: str, conversation_id: str) -> str:
        return self.conversation(tenant, conversation_id) + ":decisions"

    def conversation_fence(self, tenant: str, conversation_id: str) -> str:
        return self.conversation(tenant, conversation_id) + ":applied"

    def conversation_seen(self, tenant: str, conversation_id: str) -> str:
        """Ids of the events and decisions already counted in the conversation (dedupe)."""
        return self.conversation(tenant, conversation_id) + ":seen"

    def conversation_quarantine(self, tenant: str, conversation_id: str) -> str:
        """Decisions refused because they do not chain: ``cursor@offset`` → reason."""
        return self.conversation(tenant, conversation_id) + ":quarantined"

    def tenant(self, tenant: str) -> str:
        return f"{self.namespace}tenant:{{{_id(tenant)}}}"

    def tenant_denials(self, tenant: str) -> str:
        return self.tenant(tenant) + ":denials"

    def tenant_conversations(self, tenant: str) -> str:
        """The tenant's conversations by last activity: a sorted set, member the conversation id,
        score the ``occurred_at`` (µs) of its last conversation event (``GET /v1/conversations``)."""
        return self.tenant(tenant) + ":conversations"

    def training(self, tenant: str) -> str:
        return self.tenant(tenant) + ":training"

    def usage(self, tenant: str) -> str:
        return self.tenant(tenant) + ":usage"

    def usage_turns(self, tenant: str) -> str:
        """Turns counted per usage window, with the same fields as ``usage`` (``GET /v1/usage``)."""
        return self.tenant(tenant) + ":usage:turns"

    def tenant_fence(self, tenant: str) -> str:
        return self.tenant(tenant) + ":applied"

    def tenant_seen(self, tenant: str) -> str:
        """Ids of the events and decisions already counted in the tenant's totals (dedupe)."""
        return self.tenant(tenant) + ":seen"

    def decision_chain(self, tenant: str, conversation_id: str) -> str:
        """The last projected decision of the chain of (tenant, conversation) — the agents'
        ``decision_chain_key`` —, one field per copy; its fence (``+ FENCE_SUFFIX``) says which
        records moved it. Same hash tag as the conversation's keys: one slot."""
        return f"{self.namespace}chain:{{{_id(tenant)}/{_id(conversation_id)}}}"

    def tenant_chain(self, tenant: str, conversation_id: str) -> str:
        """The tenant group's copy of the chain head of (tenant, conversation): in the tenant's
        slot (its hash tag is the tenant's; the conversation, escaped, comes before it), because
        the tenant group's chain condition runs in the tenant's Lua call. One key per chain, so
        one conversation's records (one partition) are its only writers, as for every other key
        a parallel rebuild splits."""
        return f"{self.namespace}tchain:{_id(conversation_id)}:{{{_id(tenant)}}}"

    def tenant_chain_quarantine(self, tenant: str, conversation_id: str) -> str:
        """Decisions the tenant group refused because they do not chain: ``cursor@offset`` → reason."""
        return self.tenant_chain(tenant, conversation_id) + ":quarantined"

    def training_chain(self, tenant: str) -> str:
        """The last projected ``training.audit`` record of the tenant's chain (outcomes are chained
        per tenant, their subject), field ``tenant``; its fence (``+ FENCE_SUFFIX``) says which
        records moved it. The tenant's hash tag: in the slot of the tenant group that checks it."""
        return f"{self.namespace}trchain:{{{_id(tenant)}}}"

    def training_quarantine(self, tenant: str) -> str:
        """Training outcomes refused because they do not chain: ``cursor@offset`` → reason."""
        return self.training_chain(tenant) + ":quarantined"

    def sentinel(self) -> str:
        """Exists once the space holds the whole log; gone after a Redis flush."""
        return f"{self.namespace}complete"

    def replay_guard(self, token: str) -> str:
        """Exists while the replay ``token`` rebuilds this space; gone after a Redis flush."""
        return f"{self.namespace}replaying:{token}"

    def checkpoint(self, projection: str) -> str:
        """Highest applied offset per ``topic:partition`` (for lag and read-your-writes)."""
        return f"{self.namespace}checkpoint:{projection}"
