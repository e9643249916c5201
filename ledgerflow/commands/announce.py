"""A long-running verb's "here I am" line: plain text, or a JSON log line under ``--log-format json``
(so a JSON log stays one object per line)."""

from __future__ import annotations

import logging

from ledgerflow.commands.parsing import stderr
from ledgerflow.logformat import JsonFormatter, log_format


def announce(message: str) -> None:
    if log_format() == "json":
        record = logging.LogRecord("ledgerflow.cli", logging.INFO, __file__, 0, message, None, None)
        stderr(JsonFormatter().format(record))
    else:
        stderr(message)
