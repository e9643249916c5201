"""What the edge holds for its lifetime: one Kafka producer, one Redis pool, one SSE hub,
the in-memory state of the edge's limits (api/limits.py) and its incremental indexes of
``policy.rules`` and ``training.audit`` (api/pack_index.py, api/training_index.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from ledgerflow.api.audit_turns import AuditTurns
from ledgerflow.api.hub import CATCH_UP_STALL_S, Hub
from ledgerflow.api.limits import EdgeLimits, SseSlots, TokenBuckets
from ledgerflow.api.pack_index import PackIndex
from ledgerflow.api.training_index import TrainingIndex
from ledgerflow.api.tuning import EdgeTuning
from ledgerflow.auth.verifier import TokenVerifier
from ledgerflow.config import Settings
from ledgerflow.kafka.admin import SharedAdmin
from ledgerflow.kafka.reference import ReferenceData
from ledgerflow.projections.generations import active_keys
from ledgerflow.projections.keys import Keys


@dataclass
class EdgeContext:
    settings: Settings
    redis: aioredis.Redis
    producer: AIOKafkaProducer
    hub: Hub
    verifier: TokenVerifier
    keys: Keys
    reference: ReferenceData
    heartbeat_s: float = 15.0
    reauth_before_s: float = 30.0
    catch_up_stall_s: float = CATCH_UP_STALL_S
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    limits: EdgeLimits = field(default_factory=EdgeLimits)
    tuning: EdgeTuning = field(default_factory=EdgeTuning)
    offsets: AIOKafkaConsumer | None = None
    """A group-less consumer used only to ask for log end offsets (consistency tokens)."""
    admin: SharedAdmin | None = None
    """The admin client of ``/v1/overview`` (consumer groups), started on first use."""
    audits_running: int = 0
    """``POST /v1/audit`` runs in this process now (each reads every tenant's logs: ``audit_run``)."""
    audit_turns: AuditTurns = field(default_factory=AuditTurns)
    """Whose turn the audit slot is while tenants wait for it (``audit_turns``)."""
    rate: TokenBuckets = field(init=False)
    evaluate_rate: TokenBuckets = field(init=False)
    validate_rate: TokenBuckets = field(init=False)
    publish_rate: TokenBuckets = field(init=False)
    sse_slots: SseSlots = field(init=False)
    packs: PackIndex = field(init=False)
    """Every tenant's rule packs, read incrementally from ``policy.rules`` (``GET /v1/policy/packs``)."""
    training_log: TrainingIndex = field(init=False)
    """Every tenant's ``training.audit`` chain, read incrementally (``GET /v1/training/history``)."""

    def __post_init__(self) -> None:
        self.packs = PackIndex(self.settings)
        self.training_log = TrainingIndex(self.settings)
        self.rate = TokenBuckets(self.limits.rate_per_tenant, self.limits.rate_burst)
        self.evaluate_rate = TokenBuckets(self.limits.evaluate_rate_per_tenant, self.limits.evaluate_burst)
        self.validate_rate = TokenBuckets(self.limits.validate_rate_per_tenant, self.limits.validate_burst)
        self.publish_rate = TokenBuckets(self.limits.publish_rate_per_tenant, self.limits.publish_burst)
        self.sse_slots = SseSlots(self.limits.sse_per_tenant)

    async def read_keys(self) -> Keys:
        """The read models' active generation, resolved per request (see projections/generations.py)."""
        return await active_keys(self.redis, self.settings.topic_prefix)
