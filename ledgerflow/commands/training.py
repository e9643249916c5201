"""``ledgerflow training enable|disable|status``: the admin commands the edge offers, from a shell.

enable/disable sequence (what ``POST /v1/training/enable`` does, without the edge):
1. Read the tenant's partition of ``training.audit`` (the one its commands, keyed by the tenant,
   land in: the training agent answers into the same partition) from its start.
2. Publish the command to ``training.commands`` keyed by the tenant.
3. Fold that partition until the outcome naming our command id arrives (bounded by ``--wait``):
   accepted, or rejected with the agent's reason. Only the agent's own records count
   (``contracts/outcome_trust.py``, as for the edge's reference data): the next link of the
   tenant's chain. A record written straight to Kafka with our command id answers nothing.
``status`` reads the tenant's training read model, as ``GET /v1/training/status`` does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from ledgerflow.api.paging import rfc3339
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import Event, new_event
from ledgerflow.contracts.ids import check_id
from ledgerflow.contracts.outcome_trust import untrusted_reason
from ledgerflow.contracts.payloads import DisableTraining, EnableTraining
from ledgerflow.errors import DecodeError, DomainError, InfrastructureError
from ledgerflow.kafka.admin import partition_counts
from ledgerflow.kafka.placement import placement
from ledgerflow.policy.wire import head_after
from ledgerflow.projections.views import training_view
from ledgerflow.redisclient import sync_client
from ledgerflow.topics import TRAINING_AUDIT, TRAINING_COMMANDS


@dataclass(frozen=True, slots=True)
class Command:
    tenant: str
    enable: bool
    reason: str
    actor: str
    ttl_seconds: int | None = None
    expected_version: int | None = None


def command_event(cmd: Command, command_id: str, now_micros: int) -> Event:
    cls = EnableTraining if cmd.enable else DisableTraining
    payload = cls(
        command_id, cmd.actor, cmd.reason, cmd.ttl_seconds if cmd.enable else None, cmd.expected_version
    )
    return new_event(
        cls.TYPE,
        tenant=cmd.tenant,
        subject=cmd.tenant,
        payload=payload,
        producer=f"cli:{cmd.actor}",
        occurred_at_micros=now_micros,
    )


def outcome_json(command_id: str, outcome: Event) -> dict[str, Any]:
    """The outcome as ``POST /v1/training/enable`` answers it (times in RFC 3339)."""
    p: Any = outcome.payload
    return {
        "command_id": command_id,
        "accepted": outcome.type != "TrainingRejected",
        "outcome": outcome.type,
        "version": p.version,
        "reason": p.reason,
        "expires_at": None if p.expires_at is None else rfc3339(p.expires_at),
        "rejected_reason": p.rejected_reason,
        "audit_event_id": outcome.event_id,
    }


def run_command(settings: Settings, cmd: Command, wait_s: float) -> dict[str, Any]:
    """Steps 1–3; a rejection is a DomainError (exit 2), no outcome in time an InfrastructureError."""
    command_id = str(uuid.uuid4())
    outcome = asyncio.run(_publish_and_wait(settings, cmd, command_id, wait_s))
    if outcome is None:
        raise InfrastructureError(
            f"command {command_id} published, but no outcome within {wait_s:g} s: is a worker running? "
            f"(`ledgerflow training status --tenant {cmd.tenant}` shows when it is applied)"
        )
    answer = outcome_json(command_id, outcome)
    if not answer["accepted"]:
        raise DomainError(f"command rejected: {answer['rejected_reason']} (version {answer['version']})")
    return answer


async def _publish_and_wait(settings: Settings, cmd: Command, command_id: str, wait_s: float) -> Event | None:
    audit, commands = settings.topic(TRAINING_AUDIT), settings.topic(TRAINING_COMMANDS)
    counts = await partition_counts(settings, [audit, commands])
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await consumer.start()
    try:
        tp = TopicPartition(audit, placement(cmd.tenant.encode(), counts[commands]))  # Step 1.
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        await producer.start()
        try:  # Step 2.
            event = command_event(cmd, command_id, time.time_ns() // 1000)
            await producer.send_and_wait(commands, codec.encode(event), key=cmd.tenant.encode())
        finally:
            await producer.stop()
        watch = OutcomeWatch(cmd.tenant, command_id)
        deadline = time.monotonic() + wait_s  # Step 3.
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    found = watch.feed(rec.value)
                    if found is not None:
                        return found
        return None
    finally:
        await consumer.stop()


@dataclass(slots=True)
class OutcomeWatch:
    """Step 3, pure: the tenant's ``training.audit`` records in partition order, from the start,
    until the trusted one answering ``command_id``."""

    tenant: str
    command_id: str
    head: ChainHead | None = None
    skipped: list[str] = field(default_factory=list)  # why each untrusted record of the tenant was

    def feed(self, value: bytes | None) -> Event | None:
        """The record if it is the agent's own answer to the command, else None."""
        try:
            event = codec.decode(value or b"", allowed_types=TOPIC_TYPES[TRAINING_AUDIT])
        except DecodeError:
            return None
        if event.tenant != self.tenant:
            return None
        why = untrusted_reason(event, self.head, None, 0)
        if why is not None:  # written from outside: it answers nothing
            self.skipped.append(why)
            return None
        self.head = head_after(event)
        return event if getattr(event.payload, "command_id", None) == self.command_id else None


def status(settings: Settings, tenant: str) -> dict[str, Any]:
    """The tenant's training read model, as ``GET /v1/training/status`` answers it. A tenant
    outside the id grammar is a ValidationError (exit 2), as for ``enable``/``disable``: it used
    to read as "training disabled (version 0)", exit 0 — a typo looked like an answer."""
    check_id("tenant", tenant)

    from ledgerflow.projections.keys import DEFAULT_GENERATION, Keys, active_pointer
    from ledgerflow.redisvalues import text, text_map

    client = sync_client(settings.redis_url, socket_timeout=5, socket_connect_timeout=3)
    try:
        pointer = client.get(active_pointer(settings.topic_prefix))
        keys = Keys.for_prefix(settings.topic_prefix, text(pointer) if pointer else DEFAULT_GENERATION)
        view = text_map(client.hgetall(keys.training(tenant)))
    finally:
        client.close()
    return training_view(tenant, view)


def format_status(s: dict[str, Any]) -> str:
    line = f"tenant {s['tenant']}: training {s['state']} (version {s['version']})"
    if s["state"] == "enabled":
        line += f" by {s['owner']}: {s['reason']!r}" + (
            f", expires {s['expires_at']}" if s["expires_at"] else ""
        )
    if s["last_rejection"]:
        line += f"; last rejection: {s['last_rejection']}"
    return line


def format_outcome(o: dict[str, Any]) -> str:
    line = f"{o['outcome']} (version {o['version']})"
    return line + (f", expires {o['expires_at']}" if o["expires_at"] else "")
