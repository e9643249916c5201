"""Limits on the edge: request-target size, header count and size, body size, per-tenant request rate,
per-tenant ``/v1/evaluate`` rate, per-tenant ``POST /v1/policy/validate`` rate, per-tenant
``PUT /v1/policy/rules`` rate, per-tenant concurrent SSE
streams, how long a client may take to send a request's head and its body, and how long it may leave
the edge's answer untaken.

Every refusal is a problem+json with a clear status (408 + ``Connection: close``, 413, 414, 431,
429 + ``Retry-After``) and is counted in ``ledgerflow_edge_limited_total{limit}``, whose label takes
only the values of ``LIMIT_NAMES``. A request head not received in time has no request to answer:
its connection is closed (``api/protocol.py``) and counted as ``header_timeout``; so is one still
trickling in a body the edge answered without reading (``body_timeout``). State is in memory, per
edge process (N edges allow N times the rate).

Configuration (environment of ``ledgerflow serve``; defaults in ``EdgeLimits``):
``LEDGERFLOW_RATE_PER_TENANT`` / ``LEDGERFLOW_RATE_BURST`` (requests/s and bucket size),
``LEDGERFLOW_EVALUATE_RATE_PER_TENANT`` / ``LEDGERFLOW_EVALUATE_BURST``,
``LEDGERFLOW_VALIDATE_RATE_PER_TENANT`` / ``LEDGERFLOW_VALIDATE_BURST`` (rule packs validated),
``LEDGERFLOW_PUBLISH_RATE_PER_TENANT`` / ``LEDGERFLOW_PUBLISH_BURST`` (rule packs published),
``LEDGERFLOW_SSE_PER_TENANT`` (open streams), ``LEDGERFLOW_HEADER_TIMEOUT_S`` /
``LEDGERFLOW_BODY_TIMEOUT_S`` (seconds from a connection's opening or a request's first byte to its
last header; from the first read of a body, or the answer to a request whose body is not read, to
the body's end), ``LEDGERFLOW_WRITE_TIMEOUT_S`` (seconds the edge's writes to a client may stay
blocked: its socket buffers full, the client taking nothing). ``0`` disables a rate limit; the
deadlines cannot be turned off.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from ledgerflow.digits import ascii_digits
from ledgerflow.envnumbers import DAY_S, env_number, env_whole
from ledgerflow.errors import DomainError
from ledgerflow.limits import MAX_BODY_BYTES
from ledgerflow.metrics import EDGE_REGISTRY

__all__ = [
    "DEFAULT_BODY_TIMEOUT_S",
    "DEFAULT_HEADER_TIMEOUT_S",
    "DEFAULT_WRITE_TIMEOUT_S",
    "LIMITED",
    "LIMIT_NAMES",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "MAX_TARGET_BYTES",
    "EdgeLimits",
    "HeaderLimits",
    "LimitExceeded",
    "SseSlots",
    "TenantRateLimit",
    "TokenBuckets",
    "check_content_length",
]

MAX_HEADERS = 100
"""Most request header fields accepted; more → 431."""
MAX_HEADER_BYTES = 16 * 1024
"""Most bytes of request header names and values together; more → 431."""
MAX_TARGET_BYTES = 8 * 1024
"""Most bytes of the request target (path and query, as sent); more → 414. No route needs more,
and every public path (the registry, the docs) would otherwise take any size up to the server's own
cut-off, an unlabelled plain-text 400."""
DEFAULT_HEADER_TIMEOUT_S = 10.0
"""Seconds from a connection's opening or a request's first byte until its request line and headers
are complete; else the connection is closed (slowloris: one header byte every few seconds would hold
it forever)."""
DEFAULT_BODY_TIMEOUT_S = 10.0
"""Seconds for a body the edge reads (``problems.read_body``), from its first read to its end; else 408.
256 KiB (``MAX_BODY_BYTES``) in 10 s is about 26 KB/s, far below any client that is not stalling."""
DEFAULT_WRITE_TIMEOUT_S = 30.0
"""Seconds the edge's writes to a client may stay blocked (its socket buffers full: the client takes
nothing) before the connection is cut. Without it a client that stops reading an SSE stream but keeps
its TCP connection open held its stream, its tenant's stream slot and its queued frames for ever, even
past its token's expiry: the stream's next write never returned, so it never reached its end."""
LIMIT_NAMES = (
    "body",
    "target",
    "headers",
    "rate",
    "evaluate",
    "validate",
    "publish",
    "sse",
    "audit",
    "body_timeout",
    "header_timeout",
    "write_timeout",
)
LIMITED = Counter(
    "ledgerflow_edge_limited_total", "Requests refused by an edge limit", ["limit"], registry=EDGE_REGISTRY
)
for _name in LIMIT_NAMES:
    LIMITED.labels(_name)  # export every series from the start, at 0


class LimitExceeded(DomainError):
    """A request over an edge limit: ``status`` 408, 413, 414, 429 or 431, ``retry_after`` for 429."""

    def __init__(self, limit: str, status: int, detail: str, retry_after: int | None = None) -> None:
        super().__init__(detail)
        assert limit in LIMIT_NAMES, limit
        self.limit = limit
        self.status = status
        self.retry_after = retry_after
        LIMITED.labels(limit).inc()


@dataclass(frozen=True, slots=True)
class EdgeLimits:
    """The configurable limits (see the module doc for the environment variables)."""

    rate_per_tenant: float = 1000.0
    rate_burst: float = 2000.0
    evaluate_rate_per_tenant: float = 20.0
    evaluate_burst: float = 40.0
    validate_rate_per_tenant: float = 0.2
    """Rule packs a tenant may validate per second (one every 5 s): validating compiles the pack, up to
    about a second of the edge's CPU, and any role may ask; unbounded, one subscriber's 30
    validations at once held another tenant's requests 1-3 s."""
    validate_burst: float = 10.0
    publish_rate_per_tenant: float = 1 / 60
    """Rule packs a tenant may publish per second (one a minute): every pack is kept for ever on
    ``policy.rules`` and read in full by every worker and edge at start-up."""
    publish_burst: float = 10.0
    sse_per_tenant: int = 2000
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> EdgeLimits:
        env = os.environ if env is None else env
        base = cls()
        return cls(
            rate_per_tenant=_rate(env, "LEDGERFLOW_RATE_PER_TENANT", base.rate_per_tenant),
            rate_burst=_rate(env, "LEDGERFLOW_RATE_BURST", base.rate_burst),
            evaluate_rate_per_tenant=_rate(
                env, "LEDGERFLOW_EVALUATE_RATE_PER_TENANT", base.evaluate_rate_per_tenant
            ),
            evaluate_burst=_rate(env, "LEDGERFLOW_EVALUATE_BURST", base.evaluate_burst),
            validate_rate_per_tenant=_rate(
                env, "LEDGERFLOW_VALIDATE_RATE_PER_TENANT", base.validate_rate_per_tenant
            ),
            validate_burst=_rate(env, "LEDGERFLOW_VALIDATE_BURST", base.validate_burst),
            publish_rate_per_tenant=_rate(
                env, "LEDGERFLOW_PUBLISH_RATE_PER_TENANT", base.publish_rate_per_tenant
            ),
            publish_burst=_rate(env, "LEDGERFLOW_PUBLISH_BURST", base.publish_burst),
            sse_per_tenant=env_whole(env, "LEDGERFLOW_SSE_PER_TENANT", base.sse_per_tenant, 0),
            header_timeout_s=_deadline(env, "LEDGERFLOW_HEADER_TIMEOUT_S", base.header_timeout_s),
            body_timeout_s=_deadline(env, "LEDGERFLOW_BODY_TIMEOUT_S", base.body_timeout_s),
            write_timeout_s=_deadline(env, "LEDGERFLOW_WRITE_TIMEOUT_S", base.write_timeout_s),
        )


def _rate(env: Mapping[str, str], name: str, default: float) -> float:
    """A rate or burst: a finite number, 0 or more (0 turns the limit off)."""
    return env_number(env, name, default, 0, unit="a number")


def _deadline(env: Mapping[str, str], name: str, default: float) -> float:
    """A client deadline: seconds above 0, at most a day (there is no "off": a stalled client
    would hold its connection forever)."""
    return env_number(env, name, default, 0, DAY_S, low_open=True)


@dataclass
class TokenBuckets:
    """One token bucket per key (tenant): ``rate`` tokens/s up to ``burst``. Pure logic
    with an injectable clock. A bucket that has refilled is forgotten, so memory is
    bounded by the keys active within ``burst / rate`` seconds."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)  # key -> (tokens, at)

    def take(self, key: str) -> float | None:
        """Take one token for ``key``: None if granted, else the seconds until one is free."""
        if self.rate <= 0:
            return None
        now = self.clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > 4096:
                self._prune(now)
            return None
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / self.rate

    def give_back(self, key: str) -> None:
        """Return the token a ``take`` granted ``key`` (the work it paid for did not happen)."""
        if self.rate <= 0 or key not in self._buckets:
            return
        tokens, at = self._buckets[key]
        self._buckets[key] = (min(self.burst, tokens + 1), at)

    def _prune(self, now: float) -> None:
        full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)


def take_or_refuse(buckets: TokenBuckets, tenant: str, limit: str, what: str) -> None:
    """Raise LimitExceeded (429 with Retry-After) if ``tenant``'s bucket is empty."""
    wait = buckets.take(tenant)
    if wait is not None:
        raise LimitExceeded(
            limit,
            429,
            f"tenant {tenant!r} is over its {what} limit ({buckets.rate:g}/s); retry after the delay",
            retry_after=max(1, math.ceil(wait)),
        )


@dataclass
class SseSlots:
    """Concurrent SSE streams per tenant: ``acquire`` before streaming, ``release`` after
    (in a ``finally``). ``acquire`` raises LimitExceeded (429) when the tenant is full."""

    per_tenant: int
    _open: dict[str, int] = field(default_factory=dict)

    def acquire(self, tenant: str) -> None:
        count = self._open.get(tenant, 0)
        if count >= self.per_tenant:
            raise LimitExceeded(
                "sse",
                429,
                f"tenant {tenant!r} has {count} open streams, the limit; close one or retry later",
                retry_after=5,
            )
        self._open[tenant] = count + 1

    def release(self, tenant: str) -> None:
        count = self._open.get(tenant, 0) - 1
        if count > 0:
            self._open[tenant] = count
        else:
            self._open.pop(tenant, None)

    def open(self, tenant: str) -> int:
        return self._open.get(tenant, 0)


def check_content_length(headers: Mapping[str, str], limit: int = MAX_BODY_BYTES) -> None:
    """413 at once when the declared ``Content-Length`` is over ``limit``."""
    raw = headers.get("content-length")
    if raw is not None and ascii_digits(raw.strip()) and int(raw) > limit:
        raise LimitExceeded("body", 413, f"body of {int(raw)} bytes exceeds the {limit}-byte limit")


def target_violation(scope: Scope) -> str | None:
    """Why the request target (path and query as sent) is over ``MAX_TARGET_BYTES``, or None."""
    path = scope.get("raw_path") or str(scope.get("path", "")).encode()
    query = scope.get("query_string") or b""
    size = len(path) + (len(query) + 1 if query else 0)  # as sent: path, then "?" and the query
    if size > MAX_TARGET_BYTES:
        return f"a request target of {size} bytes; at most {MAX_TARGET_BYTES} (path and query together)"
    return None


def header_violation(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Why ``headers`` break the header limits, or None."""
    if len(headers) > MAX_HEADERS:
        return f"{len(headers)} header fields; at most {MAX_HEADERS}"
    size = sum(len(name) + len(value) for name, value in headers)
    if size > MAX_HEADER_BYTES:
        return f"{size} bytes of header fields; at most {MAX_HEADER_BYTES}"
    return None


class HeaderLimits:
    """ASGI middleware: 414 problem+json for a too long request target, 431 for too many or too
    large request headers (before authentication, so an oversized token costs nothing to refuse)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = None
            if (reason := target_violation(scope)) is not None:
                refused = LimitExceeded("target", 414, reason)
            elif (reason := header_violation(scope.get("headers", []))) is not None:
                refused = LimitExceeded("headers", 431, reason)
            if refused is not None:
                from ledgerflow.api.problems import problem_for

                await problem_for(refused)(scope, receive, send)
                return
        await self.app(scope, receive, send)


class TenantRateLimit:
    """ASGI middleware after authentication: one token bucket per tenant per edge process
    for every authenticated HTTP request; 429 + Retry-After when it is empty."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            principal = getattr(scope.get("user"), "principal", None)
            ctx = getattr(scope["app"].state, "ctx", None) if "app" in scope else None
            if principal is not None and ctx is not None:
                try:
                    take_or_refuse(ctx.rate, principal.tenant, "rate", "request rate")
                except LimitExceeded as exc:
                    from ledgerflow.api.problems import problem_for

                    await problem_for(exc)(scope, receive, send)
                    return
        await self.app(scope, receive, send)
