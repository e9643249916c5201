"""W3C trace context at the edge: every request continues the caller's trace or starts one.

A valid ``traceparent`` is continued (with this request's own span id); a missing one starts a
new trace; an invalid one is replaced by a new trace and counted
(``ledgerflow_trace_context_replaced_total{reason}``), never rejected. An invalid ``tracestate``
is dropped. The context is bound for the request (records published carry it in their
``trace_id`` and Kafka headers; log records carry ``trace_id``), and answered in the response's
``traceparent`` header so a client learns the trace id of a request it did not trace.
"""

from __future__ import annotations

from opentelemetry.trace import SpanKind
from starlette.types import Message, Receive, Scope, Send

from ledgerflow.api.middleware import HttpMiddleware
from ledgerflow.metrics import TRACE_CONTEXT_REPLACED
from ledgerflow.tracing import spans
from ledgerflow.tracing.context import TraceContext, accept, parse_traceparent
from ledgerflow.tracing.current import TRACEPARENT, TRACESTATE, bind, new_span_id, new_trace_id


class TraceContextMiddleware(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        wanted = {TRACEPARENT.encode(), TRACESTATE.encode()}
        found = {k.decode(): v.decode("latin-1") for k, v in scope["headers"] if k in wanted}
        accepted = accept(found.get(TRACEPARENT), found.get(TRACESTATE), new_trace_id(), new_span_id())
        if accepted.replaced == "invalid":
            TRACE_CONTEXT_REPLACED.labels("invalid").inc()
        if not spans.enabled():
            await self._call(accepted.context, scope, receive, send)
            return
        incoming = None if accepted.replaced else parse_traceparent(found.get(TRACEPARENT))
        if incoming is not None:
            incoming = TraceContext(
                incoming.trace_id, incoming.span_id, incoming.flags, accepted.context.tracestate
            )
        attributes = {"http.request.method": scope.get("method", ""), "url.path": scope.get("path", "")}
        with spans.span(f"HTTP {scope.get('method', '')}", SpanKind.SERVER, incoming, attributes) as server:
            await self._call(server or accepted.context, scope, receive, send)

    async def _call(self, context: TraceContext, scope: Scope, receive: Receive, send: Send) -> None:
        answer = (TRACEPARENT.encode(), context.traceparent.encode())

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), answer]
            await send(message)

        with bind(context):
            await self.app(scope, receive, send_with_trace)
