"""Reading dead letters back, split like ``audit/``: the Kafka scan (``ledgerflow.kafka.deadletters``,
shared with the audit), the pure formatting (``format``) and the CLI (``cli``).

The names below are re-exported for the CLI and the tests.
"""

from __future__ import annotations

from ledgerflow.dlq.cli import dlq_cli
from ledgerflow.dlq.format import (
    PREVIEW_BYTES,
    UNREADABLE,
    format_detail,
    format_micros,
    format_table,
    hexdump,
    original_size,
    render_list,
    show_bytes,
    size_text,
    summarize,
    to_json,
)
from ledgerflow.kafka.deadletters import (
    DlqScan,
    LocatedDeadLetter,
    dlq_topic_names,
    latest_window,
    newest,
    offset_window,
    read_dead_letter_at,
    read_dead_letters,
    scan_dead_letters,
)

__all__ = [
    "PREVIEW_BYTES",
    "UNREADABLE",
    "DlqScan",
    "LocatedDeadLetter",
    "dlq_cli",
    "dlq_topic_names",
    "format_detail",
    "format_micros",
    "format_table",
    "hexdump",
    "latest_window",
    "newest",
    "offset_window",
    "original_size",
    "read_dead_letter_at",
    "read_dead_letters",
    "render_list",
    "scan_dead_letters",
    "show_bytes",
    "size_text",
    "summarize",
    "to_json",
]
