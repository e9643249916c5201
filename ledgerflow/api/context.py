"""What the edge holds for its lifetime: one Kafka producer, one Redis pool, one SSE hub."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from ledgerflow.agents.reference import ReferenceData
from ledgerflow.api.hub import Hub
from ledgerflow.auth.verifier import TokenVerifier
from ledgerflow.config import Settings
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
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def read_keys(self) -> Keys:
        """The read models' active generation, resolved per request (see projections/generations.py)."""
        return await active_keys(self.redis, self.settings.topic_prefix)
