"""``ledgerflow worker``: create topics, register the agents, serve metrics, run faust."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import faust
from prometheus_client import start_http_server

from ledgerflow import gcpolicy, logformat
from ledgerflow.agents import (
    idlecommit,
    lag,
    layout,
    models,
    policy,
    projector,
    startlogs,
    stopdeadline,
    training,
    usage,
)
from ledgerflow.agents.app import create_app, raw_topic
from ledgerflow.agents.batching import Partition
from ledgerflow.agents.batchloop import BatchLoop, KafkaSource, linger_from, loop_group, run_loop
from ledgerflow.config import Settings
from ledgerflow.contracts.codec import require_fast_codec
from ledgerflow.errors import ValidationError
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.placement import Placements
from ledgerflow.metrics import WORKER_METRICS_ENV, WORKER_REGISTRY, gc_paused, worker_metrics_address
from ledgerflow.topics import (
    CONVERSATION_EVENTS,
    MODELS_COMMANDS,
    POLICY_DECISIONS,
    POLICY_RULES,
    TRAINING_AUDIT,
    TRAINING_COMMANDS,
    USAGE_WINDOWS,
)
from ledgerflow.tracing import spans
from ledgerflow.tracing.current import install_log_fields
from ledgerflow.usage.settings import window_config_from

AGENTS = ("policy", "projector", "training", "usage", "models")

log = logging.getLogger(__name__)


def check_environment(environ: Mapping[str, str]) -> float:
    """The worker's numeric variables, parsed before it connects (a bad one is one line, exit 2;
    in the usage agent it would surface once the app runs): the batch linger in seconds."""
    window_config_from(environ)  # read again by the usage agent
    return linger_from(environ)


def run_worker(settings: Settings, agents: str = "all", announce: Callable[[str], None] | None = None) -> int:
    require_fast_codec()
    gcpolicy.tune()  # the bench runs a worker without the CLI
    logging_config = logformat.dict_config(logformat.log_format())
    if logging_config is not None:
        logformat.use_json()  # until faust applies logging_config: start-up lines are JSON too
    install_log_fields()  # log records carry trace_id/tenant/conversation/offset when bound
    spans.configure("ledgerflow-worker")  # OpenTelemetry spans, only when an exporter is configured
    wanted = wanted_agents(agents)
    linger_s = check_environment(os.environ)  # a usage error before any connection attempt
    asyncio.run(ensure_topics(settings))
    # Partitions added to a live topic: one line and exit 1 before anything runs (agents/layout.py).
    pinned = asyncio.run(layout.pin(settings, loop_group(settings)))
    address = worker_metrics_address(os.environ)
    served = serve_metrics(address)
    if served:
        gcpolicy.time_pauses(gc_paused)  # ledgerflow_gc_pause_seconds
    if announce is not None:
        announce(
            f"worker: agents {', '.join(wanted)} on Kafka {settings.kafka_bootstrap}"
            + (f" (topic prefix {settings.topic_prefix})" if settings.topic_prefix else "")
            + (f"; metrics at http://{address}/metrics" if served else "; metrics not served")
        )
    # faust keeps its data directory under the state directory and creates only the last level.
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = create_app(settings)
    # the hot path: see agents/batchloop.py
    loop = BatchLoop(source := KafkaSource(settings, linger_s), [])
    source.metadata = pinned.encode()  # every commit remembers the layout its progress was made under
    # Turns outside their conversation's partition: dead-lettered by the policy agent, neither
    # projected nor counted (kafka/placement.py), under the pinned count. Training outcomes outside
    # their tenant's partition: quarantined by the projector (projections/verify.py).
    placements = Placements(pinned.counts[CONVERSATION_EVENTS])
    # An outcome is written into its command's partition: placed under the command topic's count,
    # which every pin holds (``guard_of(TRAINING_COMMANDS)`` below needs it too), as the rebuilds do.
    placed = {CONVERSATION_EVENTS: placements, TRAINING_AUDIT: Placements(pinned.counts[TRAINING_COMMANDS])}

    def guard_of(base: str) -> layout.PartitionGuard:
        count = layout.recent(lambda: layout.count_now(settings, base))
        return layout.PartitionGuard(pinned.counts[base], layout.refuse, count)

    # Each topic's poison records are dead-lettered by exactly one agent.
    if "policy" in wanted:
        policy.register(app, loop, settings, guard=guard_of(CONVERSATION_EVENTS))
    if "projector" in wanted:
        # The projector is the only consumer of the derived topics: their poison is its to dead-letter.
        owned = {POLICY_DECISIONS, TRAINING_AUDIT, USAGE_WINDOWS}
        owned |= set() if "policy" in wanted else {CONVERSATION_EVENTS}
        projector.register(app, loop, settings, owns_dlq=frozenset(owned), placements=placed)
    if loop.topics:
        loop.on_assigned.append(settle_collector)  # after the agents' own hooks
        app.task(lambda: run_loop(loop, source, app))
    if not {"training", "usage", "models"} & set(wanted):
        keep_faust_subscribed(app, settings)
    if "training" in wanted:
        training.register(app, settings, guard_of(TRAINING_COMMANDS))
    if "usage" in wanted:
        usage.register(app, settings, placements)
    if "models" in wanted:
        models.register(app, settings, guard_of(MODELS_COMMANDS))
    lag.register(app, settings, [source] if loop.topics else [])
    idlecommit.register(app)  # no stuck-commit ERROR for a partition that was only idle

    @app.timer(interval=layout.CHECK_EVERY_S)  # type: ignore[untyped-decorator]  # faust's timer is untyped
    async def layout_watch() -> None:
        await layout.watch(settings, pinned)

    logging.getLogger("ledgerflow").setLevel(logging.INFO)
    startlogs.install()
    # a stop that hangs on a silent broker ends after stopdeadline.STOP_DEADLINE_S, as a SIGKILL would
    worker = stopdeadline.Worker(app, loglevel="WARNING", quiet=True, logging_config=logging_config)
    if logging_config is not None:
        # JSON lines only: faust's terminal spinner would write escape codes between them
        # and raise every logger to DEBUG for itself.
        worker.spinner = None
    startlogs.plain_output(worker)
    worker.execute_from_commandline()  # returns only by SystemExit when the worker stops


async def settle_collector(partitions: set[Partition]) -> None:
    """After a rebalance, while the batch loop waits for it: one full collection, then what lives
    on is frozen out of the next ones (gcpolicy.settle)."""
    frozen = gcpolicy.settle()
    log.info("gc: %d objects frozen after %d partitions were assigned", frozen, len(partitions))


def wanted_agents(agents: str) -> list[str]:
    """The agents ``--agents`` names ('all' or a comma-separated list); ValidationError otherwise."""
    wanted = list(AGENTS) if agents == "all" else [a.strip() for a in agents.split(",") if a.strip()]
    unknown = set(wanted) - set(AGENTS)
    if unknown or not wanted:
        raise ValidationError(
            f"--agents: unknown {', '.join(sorted(unknown)) or '(none given)'}; "
            f"choose from {', '.join(AGENTS)} or 'all'"
        )
    return wanted


def keep_faust_subscribed(app: faust.App, settings: Settings) -> None:
    """faust's consumer crashes when no agent gives it a topic: with only the hot path (which has
    its own consumer), it reads the one-partition, low-traffic ``policy.rules`` and ignores it
    (reference data reads that topic with its own reader, in no group)."""

    @app.agent(raw_topic(app, settings.topic(POLICY_RULES)), name="idle", concurrency=1)
    async def idle(stream: faust.StreamT[Any]) -> None:
        async for _ in stream:
            pass


def serve_metrics(address: str | None) -> bool:
    """Prometheus metrics of this worker at http://ADDRESS/metrics (None: disabled); served?"""
    if address is None:
        return False
    host, _, port = address.rpartition(":")
    try:
        start_http_server(int(port), addr=host or "127.0.0.1", registry=WORKER_REGISTRY)
    except OSError as exc:  # several workers on one host: the first one serves
        log.warning(
            "worker metrics not served on %s (%s); set %s to a free address", address, exc, WORKER_METRICS_ENV
        )
        return False
    return True
