"""Prometheus metrics of the ledgerflow processes, each in the registry of the process that exports it.

Registries: ``EDGE_REGISTRY`` is what the edge serves at ``/metrics``; ``WORKER_REGISTRY`` is
prometheus_client's default registry, which the worker serves on ``LEDGERFLOW_WORKER_METRICS``
(so a metric created without ``registry=`` is a worker metric). Importing this module in a
process that does not serve a registry costs nothing: its metrics are never exported. Both
registries carry ``ledgerflow_build_info`` and the client library's ``process_*`` and
``python_*`` families. Names follow Prometheus conventions under one ``ledgerflow_``
namespace: counters end in ``_total``, durations in ``_seconds``; docs/observability.md
lists every family (a test checks the table against these registries).

Label policy: a label value comes from a closed set, never from what a client sends.
The edge's HTTP metrics are labelled only through ``observe_http``, which folds
anything outside the closed sets into ``other``: methods outside ``HTTP_METHODS``,
statuses outside ``HTTP_STATUSES`` (into their class, ``4xx``), and route templates
beyond ``MAX_ROUTE_LABELS`` distinct ones; a request that matched no route is
``unmatched`` (its raw path is never a label). So the series count of the edge's
``/metrics`` stays fixed whatever methods and paths it is sent.
"""

from __future__ import annotations

import platform
import re
from collections.abc import Mapping

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

import ledgerflow
from ledgerflow.config import metrics_address

# No ``*_created`` series: Prometheus would store each as one more gauge per counter and histogram.
disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated

WORKER_METRICS_ENV = "LEDGERFLOW_WORKER_METRICS"
DEFAULT_WORKER_METRICS = "127.0.0.1:8701"
EDGE_REGISTRY = CollectorRegistry()
WORKER_REGISTRY = REGISTRY
ProcessCollector(registry=EDGE_REGISTRY)
PlatformCollector(registry=EDGE_REGISTRY)
GCCollector(registry=EDGE_REGISTRY)


def worker_metrics_address(env: Mapping[str, str]) -> str | None:
    """HOST:PORT where a worker started with ``env`` serves its metrics (None: disabled)."""
    return metrics_address(env.get(WORKER_METRICS_ENV, DEFAULT_WORKER_METRICS), WORKER_METRICS_ENV)


def build_info(process: str, registry: CollectorRegistry) -> Info:
    """``ledgerflow_build_info{version,python,implementation,process} 1`` in ``registry``."""
    info = Info("ledgerflow_build", "Version of ledgerflow and of its interpreter", registry=registry)
    info.info(
        {
            "version": ledgerflow.__version__,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "process": process,
        }
    )
    return info


EDGE_BUILD_INFO = build_info("edge", EDGE_REGISTRY)
WORKER_BUILD_INFO = build_info("worker", WORKER_REGISTRY)

OTHER = "other"
UNMATCHED = "unmatched"
HTTP_METHODS: frozenset[str] = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}
)
"""The methods of RFC 9110 and RFC 5789: every other method is labelled ``other``."""
HTTP_STATUSES: frozenset[int] = frozenset(
    {200, 201, 202, 204, 206, 301, 302, 304, 307, 308}
    | {400, 401, 403, 404, 405, 406, 408, 409, 410, 411, 412, 413, 414, 415, 416, 422, 428, 429, 431}
    | {500, 501, 502, 503, 504}
)
"""Statuses labelled exactly; any other becomes its class (``2xx`` … ``5xx``) or ``other``."""
MAX_ROUTE_LABELS = 64
"""Distinct route templates labelled (the edge has about 16); later ones fold into ``other``."""
_routes: set[str] = set()

HTTP_REQUESTS = Counter(
    "ledgerflow_http_requests_total",
    "HTTP requests by route and status",
    ["route", "method", "status"],
    registry=EDGE_REGISTRY,
)
HTTP_LATENCY = Histogram(
    "ledgerflow_http_request_duration_seconds",
    "HTTP request latency by route",
    ["route", "method"],
    registry=EDGE_REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)


def method_label(method: str) -> str:
    """``method`` if it is a standard method (exact, upper case), else ``other``."""
    return method if method in HTTP_METHODS else OTHER


def status_label(status: int) -> str:
    """The status itself if listed in ``HTTP_STATUSES``, else its class, else ``other``."""
    if status in HTTP_STATUSES:
        return str(status)
    return f"{status // 100}xx" if 100 <= status <= 599 else OTHER


def route_label(template: str | None) -> str:
    """The matched route's template (``/v1/conversations/{conversation_id}``), ``unmatched`` or ``other``."""
    if template is None:
        return UNMATCHED
    if template not in _routes:
        if len(_routes) >= MAX_ROUTE_LABELS:
            return OTHER
        _routes.add(template)
    return template


def observe_http(template: str | None, method: str, status: int, seconds: float) -> None:
    """Count one request and its latency, with labels from closed sets only."""
    route, verb = route_label(template), method_label(method)
    HTTP_REQUESTS.labels(route, verb, status_label(status)).inc()
    HTTP_LATENCY.labels(route, verb).observe(seconds)


SSE_SUBSCRIBERS = Gauge("ledgerflow_sse_subscribers", "Open SSE streams", registry=EDGE_REGISTRY)
SSE_CATCH_UPS = Gauge(
    "ledgerflow_sse_catch_ups", "SSE catch-ups holding a slot (reading the log)", registry=EDGE_REGISTRY
)
SSE_FRAMES = Counter("ledgerflow_sse_frames_total", "SSE frames sent", ["event"], registry=EDGE_REGISTRY)
SSE_DROPPED = Counter(
    "ledgerflow_sse_subscribers_dropped_total", "Subscribers closed", ["reason"], registry=EDGE_REGISTRY
)
INDEX_RECORDS_READ = Counter(
    "ledgerflow_edge_index_records_read_total",
    "Records the edge's incremental indexes (rule pack catalog, training history) read from a topic: "
    "each record once per edge process, whichever tenant's request read it",
    ["topic"],
    registry=EDGE_REGISTRY,
)
EVENTS_INGESTED = Counter(
    "ledgerflow_events_ingested_total", "Events accepted by POST /v1/events", ["type"], registry=EDGE_REGISTRY
)
PROJECTION_LAG = Gauge(
    "ledgerflow_projection_lag_records",
    "conversation.events records not yet applied to the read models (as the edge sees them)",
    ["projection"],
    registry=EDGE_REGISTRY,
)
TRACE_CONTEXT_REPLACED = Counter(
    "ledgerflow_trace_context_replaced_total",
    "Invalid traceparent headers replaced by a new trace",
    ["reason"],
    registry=EDGE_REGISTRY,
)

# The worker's agents (the default registry).

RECORDS_PROCESSED = Counter(
    "ledgerflow_records_processed_total", "Records handled by an agent", ["agent", "topic"]
)
DEAD_LETTERS = Counter(
    "ledgerflow_dead_letters_total", "Records sent to a dead-letter topic", ["agent", "topic", "reason"]
)
_REASON_CODE = re.compile(r"[a-z][a-z0-9-]{0,47}")


def reason_label(code: str) -> str:
    """A dead letter's ``reason_code`` as a label: a short kebab-case code, else ``other``.

    Codes are the prefix of a reason up to its first colon; a reason without one (free
    text) must not become a label of its own.
    """
    return code if _REASON_CODE.fullmatch(code) else OTHER


PROJECTION_OPS = Counter(
    "ledgerflow_projection_groups_total", "Fenced op groups sent to Redis", ["projection", "result"]
)
REDIS_ROUND_TRIPS = Counter(
    "ledgerflow_redis_round_trips_total", "Redis round trips made by projections", ["projection"]
)

DECISIONS = Counter("ledgerflow_policy_decisions_total", "Policy decisions by outcome", ["outcome"])
RECOVERY_SKIPPED = Counter(
    "ledgerflow_policy_recovery_skipped_total",
    "policy.decisions records the policy agent's recovery did not take as its own (forged, altered, "
    "unlinked, copied), by reason",
    ["reason"],
)
DECISION_LATENCY = Histogram(
    "ledgerflow_policy_decision_duration_seconds",
    "Per-decision processing time (batch time / decisions)",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)

GC_PAUSES = Histogram(
    "ledgerflow_gc_pause_seconds",
    "Cyclic garbage collections of the worker by generation (2: full); each stalls every turn in flight",
    ["generation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
)
for _generation in ("0", "1", "2"):
    GC_PAUSES.labels(_generation)  # every series from the start: a rate over a missing one is no alert


def gc_paused(generation: int, seconds: float) -> None:
    """One collection of ``generation`` (0–2, CPython's; anything else is ``other``) that took ``seconds``."""
    label = str(generation) if generation in (0, 1, 2) else OTHER
    GC_PAUSES.labels(label).observe(seconds)


TRAINING_OUTCOMES = Counter(
    "ledgerflow_training_command_outcomes_total", "training.audit records by type", ["type"]
)
TRAINING_STATE = Gauge(
    "ledgerflow_training_mode_enabled", "1 when a tenant's training mode is enabled", ["tenant"]
)
TRAINING_DUPLICATES = Counter(
    "ledgerflow_training_duplicate_commands_total",
    "training commands skipped as duplicate deliveries of a command already answered",
)

USAGE_WINDOWS_EMITTED = Counter(
    "ledgerflow_usage_windows_emitted_total", "usage.windows records by kind", ["kind"]
)
USAGE_WINDOW_LAG = Gauge(
    "ledgerflow_usage_window_lag_seconds", "Wall clock minus watermark per input partition", ["partition"]
)

PACKS_REFUSED = Counter(
    "ledgerflow_policy_packs_refused_total",
    "policy.rules records the policy agent refused (the pack in force stayed), by reason",
    ["reason"],
)
"""Alert on ``increase(ledgerflow_policy_packs_refused_total[5m]) > 0``: someone wrote a pack that
is unsigned, signed by an unknown or retired key, or altered (docs/policy.md)."""
PACK_REFUSAL_REASONS: frozenset[str] = frozenset(
    {
        "unsigned",
        "malformed-signature",
        "unknown-key",
        "retired-key",
        "key-not-yet-valid",
        "hash-mismatch",
        "tenant-mismatch",
        "bad-signature",
        "no-trust-store",
        "invalid-rule-pack",
        "not-single-object",
        "truncated",
        "unknown-fingerprint",
        "undecodable",
        "wrong-type-for-topic",
        "invalid-envelope",
        "content-too-large",
    }
)


def pack_refused(reason: str) -> None:
    """Count one refused pack under its reason code (``other`` outside the closed set)."""
    code = reason.split(":", 1)[0].strip()
    PACKS_REFUSED.labels(code if code in PACK_REFUSAL_REASONS else OTHER).inc()
