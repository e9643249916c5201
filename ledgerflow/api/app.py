"""``create_app(settings)``: the Starlette edge. Its lifespan owns the Kafka producer, the
Redis pool and the SSE hub; endpoints only read read models or publish records."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator, Mapping

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import Message, Receive, Scope, Send

from ledgerflow.api import (
    api_docs,
    audit_run,
    console,
    conversation_list,
    conversations,
    events,
    forecast,
    health,
    models,
    openapi,
    overview,
    policy,
    rulepack_catalog,
    rulepack_validation,
    schema_registry,
    step,
    streams,
    training,
    training_history,
    usage,
)
from ledgerflow.api.authentication import DEFAULT_PUBLIC_PATHS, JwtBackend, on_error
from ledgerflow.api.context import EdgeContext
from ledgerflow.api.faults import KAFKA_REQUEST_TIMEOUT_MS, REDIS_CONNECT_TIMEOUT_S, REDIS_SOCKET_TIMEOUT_S
from ledgerflow.api.hub import Hub
from ledgerflow.api.limits import EdgeLimits, HeaderLimits, TenantRateLimit
from ledgerflow.api.middleware import HttpMiddleware
from ledgerflow.api.problems import exception_handlers
from ledgerflow.api.tracing import TraceContextMiddleware
from ledgerflow.api.tuning import tuning_from
from ledgerflow.audit.cli import check_environment as check_audit_environment
from ledgerflow.auth.jwks import JwksSource
from ledgerflow.auth.verifier import TokenVerifier
from ledgerflow.config import Settings
from ledgerflow.contracts.codec import require_fast_codec
from ledgerflow.identity.edge import RefusalRecorder, refusals_window_from
from ledgerflow.kafka.admin import SharedAdmin
from ledgerflow.kafka.reference import ReferenceData
from ledgerflow.metrics import observe_http
from ledgerflow.projections.keys import Keys
from ledgerflow.redisclient import async_client
from ledgerflow.tracing import spans
from ledgerflow.tracing.current import install_log_fields


def routes() -> list[BaseRoute]:
    """Every route of the edge. Each handler carries its OpenAPI operation (``api/spec.py``);
    the document is built from this table (``api/openapi.py``)."""
    return [
        Route("/", console.to_console, include_in_schema=False),
        Route(console.MOUNT, console.to_console, include_in_schema=False),
        Mount(console.MOUNT, app=console.ConsoleFiles(), name="console"),
        Route("/healthz", health.healthz),
        Route("/readyz", health.readyz),
        Route("/metrics", health.metrics),
        Route("/openapi.json", openapi.openapi_json),
        Route(api_docs.PATH, api_docs.api_docs),
        Route("/v1/events", events.ingest, methods=["POST"]),
        Route("/v1/overview", overview.overview),
        Route("/v1/conversations", conversation_list.list_conversations),
        Route("/v1/conversations/{conversation_id}", conversations.get_conversation),
        Route("/v1/conversation/stream", streams.conversation_stream),
        Route("/v1/streams/tenant", streams.tenant_stream),
        Route("/v1/conversation/step", step.step, methods=["POST"]),
        Route("/v1/evaluate", policy.evaluate_dry_run, methods=["POST"]),
        Route("/v1/policy/rules", policy.put_rules, methods=["PUT"]),
        Route("/v1/policy/packs", rulepack_catalog.list_packs),
        Route("/v1/policy/packs/{version}", rulepack_catalog.get_pack),
        Route("/v1/policy/validate", rulepack_validation.validate_pack, methods=["POST"]),
        Route("/v1/training/enable", training.enable, methods=["POST"]),
        Route("/v1/training/disable", training.disable, methods=["POST"]),
        Route("/v1/training/status", training.status),
        Route("/v1/training/history", training_history.training_history),
        Route("/v1/usage", usage.usage),
        Route("/v1/forecast", forecast.forecast),
        Route("/v1/models", models.list_models),
        Route("/v1/models", models.register_model, methods=["POST"]),
        Route("/v1/models/disable", models.disable_model, methods=["POST"]),
        Route("/v1/models/enable", models.enable_model, methods=["POST"]),
        Route("/v1/audit", audit_run.audit, methods=["POST"]),
        *registry_routes(),
    ]


def registry_routes() -> list[BaseRoute]:
    """The read-only Schema Registry API (``api/schema_registry.py``)."""
    r, at = schema_registry, schema_registry.MOUNT
    return [
        Route(f"{at}/subjects", r.list_subjects),
        Route(f"{at}/subjects/{{subject}}", r.lookup_schema, methods=["POST"]),
        Route(f"{at}/subjects/{{subject}}/versions", r.list_versions),
        Route(f"{at}/subjects/{{subject}}/versions/{{version}}", r.get_version),
        Route(f"{at}/subjects/{{subject}}/versions/{{version}}/schema", r.get_version_schema),
        Route(f"{at}/schemas/ids/{{schema_id}}", r.get_schema),
        Route(f"{at}/schemas/ids/{{schema_id}}/subjects", r.get_schema_subjects),
        Route(f"{at}/schemas/ids/{{schema_id}}/versions", r.get_schema_versions),
        Route(f"{at}/schemas/types", r.schema_types),
        Route(f"{at}/config", r.get_config),
        Route(f"{at}/config/{{subject}}", r.get_subject_config),
        Route(f"{at}/mode", r.get_mode),
    ]


def check_environment(environ: Mapping[str, str]) -> None:
    """The numeric variables ``create_app`` reads, parsed on their own: ``ledgerflow serve`` calls it
    before it connects anywhere, so a bad one is one line (exit 2) and nothing else."""
    EdgeLimits.from_env(environ)
    tuning_from(environ)
    refusals_window_from(environ)
    check_audit_environment(environ)


def create_app(settings: Settings, *, heartbeat_s: float = 15.0) -> Starlette:
    install_log_fields()  # log records carry the request's trace_id (docs/tracing.md)
    spans.configure("ledgerflow-edge")  # OpenTelemetry spans, only when an exporter is configured
    limits = EdgeLimits.from_env()
    tuning = tuning_from(os.environ)
    check_audit_environment(os.environ)  # POST /v1/audit runs it: a bad variable stops the edge here
    verifier = TokenVerifier(
        JwksSource(settings.jwks_location), issuer=settings.issuer, audience=settings.audience
    )
    refusals = RefusalRecorder(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        """Start the clients in order; whatever started is stopped, in reverse order, also when a
        later one fails to start (an ``AsyncExitStack``: a failing ``hub.start()`` leaks nothing)."""
        require_fast_codec()
        async with contextlib.AsyncExitStack() as stack:
            # Bounded dependency calls (api/faults.py): a dead Redis or broker answers 503 in time.
            redis = async_client(
                settings.redis_url,
                socket_timeout=REDIS_SOCKET_TIMEOUT_S,
                socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
                retry=Retry(NoBackoff(), 1),
                health_check_interval=30,
            )
            stack.push_async_callback(redis.aclose)
            producer = AIOKafkaProducer(
                bootstrap_servers=settings.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS,
            )
            await producer.start()
            stack.push_async_callback(producer.stop)
            recording = asyncio.create_task(refusals.run(producer), name="auth-refusals")
            stack.push_async_callback(_stop_recording, recording, refusals)
            offsets = AIOKafkaConsumer(
                bootstrap_servers=settings.kafka_bootstrap,
                enable_auto_commit=False,
                request_timeout_ms=KAFKA_REQUEST_TIMEOUT_MS + 1000,
            )
            await offsets.start()
            stack.push_async_callback(offsets.stop)
            admin = SharedAdmin(settings.kafka_bootstrap, KAFKA_REQUEST_TIMEOUT_MS)
            stack.push_async_callback(admin.close)
            hub = Hub(settings)
            await hub.start()
            stack.push_async_callback(hub.stop)
            reference = ReferenceData(settings)
            await reference.start()
            stack.push_async_callback(reference.stop)
            app.state.ctx = EdgeContext(
                settings,
                redis,
                producer,
                hub,
                verifier,
                Keys.for_prefix(settings.topic_prefix),
                reference,
                heartbeat_s=heartbeat_s,
                limits=limits,
                tuning=tuning,
                offsets=offsets,
                admin=admin,
            )
            stack.push_async_callback(app.state.ctx.packs.close)
            stack.push_async_callback(app.state.ctx.training_log.close)
            stack.callback(app.state.ctx.closing.set)
            yield

    table = routes()
    app = Starlette(
        routes=table,
        middleware=[
            Middleware(RequestMetrics),
            Middleware(TraceContextMiddleware),
            Middleware(HeaderLimits),
            Middleware(
                AuthenticationMiddleware,
                backend=JwtBackend(
                    verifier,
                    public_paths=DEFAULT_PUBLIC_PATHS | console.PUBLIC_PATHS | api_docs.PUBLIC_PATHS,
                    public_prefixes=(console.MOUNT + "/", schema_registry.MOUNT + "/"),
                    routes=table,
                    on_refused=refusals.count,
                ),
                on_error=on_error,
            ),
            Middleware(TenantRateLimit),
        ],
        exception_handlers=exception_handlers(),
        lifespan=lifespan,
    )
    # A path that differs from a route by a trailing slash is an unknown path (404 problem), not a
    # 307 to a URL built from the client's Host header (docs/api.md).
    app.router.redirect_slashes = False
    return app


async def _stop_recording(task: asyncio.Task[None], refusals: RefusalRecorder) -> None:
    """Stop the per-window task, then write the last (partial) window before the producer stops."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await refusals.flush()


class RequestMetrics(HttpMiddleware):
    """Counts requests and their latency by route template (not raw path: bounded labels)."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        began = time.perf_counter()
        status = {"code": 500}

        async def record_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            template = getattr(scope.get("route"), "path", None)
            observe_http(template, scope["method"], status["code"], time.perf_counter() - began)
