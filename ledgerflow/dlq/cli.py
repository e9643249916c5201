"""``ledgerflow dlq list`` and ``ledgerflow dlq show``: the scan (``kafka.deadletters``), printed."""

from __future__ import annotations

import asyncio

import orjson

from ledgerflow.config import Settings
from ledgerflow.dlq.format import format_detail, render_list, to_json
from ledgerflow.errors import NotFound, ValidationError
from ledgerflow.kafka.deadletters import (
    dlq_topic_names,
    no_letter_message,
    read_dead_letter_at,
    scan_dead_letters,
)


def dlq_cli(
    settings: Settings,
    action: str,
    topic: str | None,
    limit: int | None,
    offset: int | None,
    as_json: bool,
) -> int:
    """``ledgerflow dlq list [--topic T] [--limit N] [--json]`` / ``dlq show --topic T --offset N``.

    Prints to stdout. Returns 0 when it printed what was asked (an empty DLQ included); ``list``
    returns 1 when the DLQ topic of ``--topic`` does not exist (its report says so). ``show`` of
    a DLQ topic or an offset that does not exist raises NotFound: one line on stderr, exit 1, as
    every failure (docs/cli.md), and nothing on stdout, where a ``--json`` reader expects JSON.
    """
    if action == "list":
        scan = asyncio.run(scan_dead_letters(settings, topic, limit))
        print(render_list(scan, as_json))
        return 1 if topic is not None and scan.missing else 0
    if action == "show":
        if topic is None or offset is None:
            raise ValidationError("dlq show needs --topic T and --offset N (an offset `dlq list` prints)")
        try:
            found = asyncio.run(read_dead_letter_at(settings, topic, offset))
        except ValidationError as exc:  # the DLQ topic does not exist
            raise NotFound(str(exc)) from None
        if found is None:
            raise NotFound(no_letter_message(dlq_topic_names(settings, topic)[0], topic, offset))
        print(
            orjson.dumps(to_json(found), option=orjson.OPT_INDENT_2).decode()
            if as_json
            else format_detail(found)
        )
        return 0
    raise ValidationError(f"dlq: unknown action {action!r}; use list or show")
