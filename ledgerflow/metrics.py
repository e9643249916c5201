"""Prometheus metrics of every ledgerflow process (exposed at ``/metrics`` by the edge)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "ledgerflow_http_requests_total", "HTTP requests by route and status", ["route", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "ledgerflow_http_request_seconds",
    "HTTP request latency by route",
    ["route", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
SSE_SUBSCRIBERS = Gauge("ledgerflow_sse_subscribers", "Open SSE streams")
SSE_FRAMES = Counter("ledgerflow_sse_frames_total", "SSE frames sent", ["event"])
SSE_DROPPED = Counter("ledgerflow_sse_subscribers_dropped_total", "Subscribers closed", ["reason"])
EVENTS_INGESTED = Counter("ledgerflow_events_ingested_total", "Events accepted by POST /v1/events", ["type"])

RECORDS_PROCESSED = Counter(
    "ledgerflow_records_processed_total", "Records handled by an agent", ["agent", "topic"]
)
DEAD_LETTERS = Counter(
    "ledgerflow_dead_letters_total", "Records sent to a dead-letter topic", ["agent", "topic", "reason"]
)
PROJECTION_OPS = Counter(
    "ledgerflow_projection_groups_total", "Fenced op groups sent to Redis", ["projection", "result"]
)
REDIS_ROUND_TRIPS = Counter(
    "ledgerflow_redis_round_trips_total", "Redis round trips made by projections", ["projection"]
)

DECISIONS = Counter("policy_decision_total", "Policy decisions by outcome", ["outcome"])
DECISION_LATENCY = Histogram(
    "policy_evaluation_seconds",
    "Per-decision processing time (batch time / decisions)",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
)

TRAINING_OUTCOMES = Counter("training_command_outcomes_total", "training.audit records by type", ["type"])
TRAINING_STATE = Gauge("training_mode_state", "1 when a tenant's training mode is enabled", ["tenant"])

USAGE_WINDOWS_EMITTED = Counter("usage_windows_emitted_total", "usage.windows records by kind", ["kind"])
USAGE_WINDOW_LAG = Gauge(
    "usage_window_lag_seconds", "Wall clock minus watermark per input partition", ["partition"]
)

PROJECTION_LAG = Gauge(
    "ledgerflow_projection_lag_records",
    "conversation.events records not yet applied to the read models",
    ["projection"],
)
