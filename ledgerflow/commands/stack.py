"""Checks before ``ledgerflow stack up`` starts anything: settings that contradict each other."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError, ValidationError

# (the variable naming a running service, the variable of the port `stack up` would use, what)
_PAIRS = (
    ("LEDGERFLOW_KAFKA_BOOTSTRAP", "LEDGERFLOW_KAFKA_PORT", "broker"),
    ("LEDGERFLOW_REDIS_URL", "LEDGERFLOW_REDIS_PORT", "Redis"),
)


def contradictions(env: Mapping[str, str]) -> list[str]:
    """One sentence per pair of variables that cannot both hold (pure: unit-tested)."""
    out = []
    for external, port, what in _PAIRS:
        if env.get(external, "").strip() and env.get(port, "").strip():
            out.append(
                f"{external} and {port} are both set: {external} names a {what} that already runs "
                f"(`stack up` starts none), {port} the port of the {what} `stack up` starts; unset one"
            )
    return out


def check_up(settings: Settings, env: Mapping[str, str] | None = None) -> None:
    found = contradictions(os.environ if env is None else env)
    if found:
        raise ValidationError(found[0])
    if settings.kafka_external:  # `stack up` will not start it: "start one with stack up" would loop
        try:
            asyncio.run(broker_answers(settings))
        except KafkaError as exc:
            raise InfrastructureError(
                f"no Kafka broker answers at {settings.kafka_bootstrap} ({type(exc).__name__}), the one "
                "LEDGERFLOW_KAFKA_BOOTSTRAP / --kafka names, so `stack up` starts none: start that broker, "
                "or unset LEDGERFLOW_KAFKA_BOOTSTRAP to have `stack up` start a local one"
            ) from None


async def broker_answers(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=5000)
    await admin.start()
    await admin.close()
