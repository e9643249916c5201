"""Log output: human-readable text (the default) or one JSON object per line (``--log-format json``).

``LEDGERFLOW_LOG_FORMAT`` (``text`` or ``json``) chooses for ``worker``, ``serve`` and ``demo``;
their ``--log-format`` flag sets it, so the demo's children inherit it. A JSON line has
``time`` (RFC 3339, UTC, microseconds), ``level``, ``logger`` and ``message``, then whichever
of ``CONTEXT_FIELDS`` the record carries (set with ``extra=`` or by a logging filter), then
``exception`` when one is logged. A 30-line formatter of our own rather than a library:
it writes this closed set of fields and nothing else, so an ``extra=`` object never leaks
whole into the logs, and the field names are ours to document.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ledgerflow.errors import ValidationError

ENV = "LEDGERFLOW_LOG_FORMAT"
FORMATS = ("text", "json")
CONTEXT_FIELDS = ("trace_id", "tenant", "conversation", "topic", "partition", "offset")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped by JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # ASCII only: a lone surrogate (bytes decoded with surrogateescape) cannot break the
        # stream's encoder, and control characters such as ESC stay escaped.
        return json.dumps(line)


def log_format(env: Mapping[str, str] | None = None) -> str:
    """The chosen format; ValidationError (one line) when ``LEDGERFLOW_LOG_FORMAT`` is neither.

    ``text`` leaves each process's own format alone (faust's for the worker, uvicorn's for
    the edge); ``json`` replaces them.
    """
    value = (os.environ if env is None else env).get(ENV, "text").strip().lower() or "text"
    if value not in FORMATS:
        raise ValidationError(f"{ENV}={value!r} is not a log format; use 'text' or 'json'")
    return value


def use_json(level: int = logging.INFO) -> None:
    """Root logging to stderr as JSON lines; ledgerflow's loggers at ``level``, libraries at WARNING."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    logging.root.handlers[:] = [handler]
    logging.root.setLevel(logging.WARNING)
    logging.getLogger("ledgerflow").setLevel(level)


def dict_config(fmt: str) -> dict[str, Any] | None:
    """A ``logging.config.dictConfig`` for the faust worker in ``fmt`` (None: faust's own)."""
    if fmt != "json":
        return None
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json"}},
        "root": {"level": "WARNING", "handlers": ["default"]},
    }


def choose(flag: str | None) -> str:
    """Apply a ``--log-format`` flag (it wins over the environment and is inherited by child
    processes); return the format in force."""
    if flag:
        os.environ[ENV] = flag
    return log_format()
