"""``ledgerflow worker``: create topics, register the agents, run the faust worker."""

from __future__ import annotations

import asyncio
import logging

import faust

from ledgerflow.agents import policy, projector
from ledgerflow.agents.app import create_app
from ledgerflow.config import Settings
from ledgerflow.contracts.codec import require_fast_codec
from ledgerflow.kafka_admin import ensure_topics
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS

AGENTS = ("policy", "projector")


def run_worker(settings: Settings, agents: str = "all") -> int:
    require_fast_codec()
    wanted = list(AGENTS) if agents == "all" else [a.strip() for a in agents.split(",") if a.strip()]
    unknown = set(wanted) - set(AGENTS)
    if unknown:
        raise SystemExit(f"unknown agents {sorted(unknown)}; choose from {sorted(AGENTS)}")
    asyncio.run(ensure_topics(settings))
    app = create_app(settings)
    # Each topic's poison records are dead-lettered by exactly one agent.
    if "policy" in wanted:
        policy.register(app, settings, owns_dlq=True)
    if "projector" in wanted:
        owned = {POLICY_DECISIONS} | (set() if "policy" in wanted else {CONVERSATION_EVENTS})
        projector.register(app, settings, owns_dlq=frozenset(owned))
    logging.getLogger("ledgerflow").setLevel(logging.INFO)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True)
    worker.execute_from_commandline()  # returns only by SystemExit when the worker stops
    return 0
