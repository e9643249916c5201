"""W3C trace context: parsing and validating ``traceparent``/``tracestate`` (``context``), the
current trace and log fields of a task (``current``). See docs/tracing.md."""
