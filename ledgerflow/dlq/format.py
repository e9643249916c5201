"""Formatting dead letters for ``ledgerflow dlq``: tables, details, hexdumps, JSON (pure)."""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.kafka.deadletters import DlqScan, LocatedDeadLetter, missing_message

PREVIEW_BYTES = 64
UNREADABLE = "unreadable-dead-letter"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def summarize(letters: Iterable[LocatedDeadLetter]) -> dict[str, Any]:
    """Counts: total, distinct source records, by source topic, by reason_code, and both.

    Agents deliver at least once, so a crash can dead-letter one record twice:
    ``distinct_source_records`` below ``total`` shows that.
    """
    pairs: Counter[tuple[str, str]] = Counter()
    sources = set()
    for x in letters:
        d = x.letter
        if d is not None:
            sources.add((d.source_topic, d.partition, d.offset))
        pairs[(d.source_topic, d.reason_code) if d else (f"(unreadable in {x.dlq_topic})", UNREADABLE)] += 1
    by_pair: dict[str, dict[str, int]] = {}
    for (source, code), n in sorted(pairs.items()):
        by_pair.setdefault(source, {})[code] = n
    by_reason: Counter[str] = Counter()
    for (_, code), n in pairs.items():
        by_reason[code] += n
    return {
        "total": sum(pairs.values()),
        "distinct_source_records": len(sources),
        "by_source_topic": {source: sum(codes.values()) for source, codes in by_pair.items()},
        "by_reason_code": dict(sorted(by_reason.items())),
        "by_source_topic_and_reason": by_pair,
    }


def format_table(letters: Sequence[LocatedDeadLetter]) -> str:
    """One line per letter: DLQ offset, source topic[partition]@offset, code, reason, key, size."""
    header = ("DLQ OFFSET", "SOURCE", "REASON CODE", "REASON", "KEY", "VALUE BYTES")
    # VALUE BYTES is the original value's size; "(kept N)" when only a prefix is kept.
    rows = [header] + [_row(x) for x in letters]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def _row(x: LocatedDeadLetter) -> tuple[str, ...]:
    where = f"{x.dlq_offset}" if x.dlq_partition == 0 else f"{x.dlq_partition}:{x.dlq_offset}"
    if x.letter is None:
        return (where, "?", UNREADABLE, _clip(x.problem or "", 60), "-", str(len(x.raw)))
    d = x.letter
    return (
        where,
        f"{d.source_topic}[{d.partition}]@{d.offset}",
        d.reason_code,
        _clip(d.reason, 60),
        _clip(show_bytes(d.key), 40) + ("…" if d.key_truncated else ""),
        size_text(d),
    )


def original_size(d: DeadLetter) -> int:
    """Bytes of the original value (``value_size``; v1 letters: the value kept)."""
    return len(d.value) if d.value_size is None else d.value_size


def size_text(d: DeadLetter) -> str:
    return f"{original_size(d)} (kept {len(d.value)})" if d.value_truncated else str(original_size(d))


def format_detail(x: LocatedDeadLetter) -> str:
    """Everything about one letter, with headers and a hexdump of the value's first bytes."""
    lines = [f"dead letter     {x.dlq_topic}[{x.dlq_partition}]@{x.dlq_offset}"]
    if x.letter is None:
        lines += [f"unreadable      {x.problem}", _preview("raw", x.raw)]
        return "\n".join(lines)
    d = x.letter
    lines += [
        f"source          {d.source_topic} partition {d.partition} offset {d.offset}",
        f"reason code     {d.reason_code}",
        f"reason          {d.reason}",
        f"agent           {d.agent}",
        f"failed at       {format_micros(d.failed_at)}",
        f"key             {show_bytes(d.key)}" + (" (truncated)" if d.key_truncated else ""),
        f"headers         {len(d.headers) or 'none'}"
        + (f" ({d.headers_dropped} more not kept)" if d.headers_dropped else ""),
    ]
    lines += [f"  {name} = {show_bytes(value)}" for name, value in d.headers]
    lines.append(f"value size      {original_size(d)} bytes")
    lines.append(f"value sha256    {d.value_sha256 or '?'}")
    if d.value_truncated:
        lines.append(
            f"value kept      first {len(d.value)} bytes only (the record was too large to keep whole)"
        )
    lines.append(_preview("value", d.value))
    return "\n".join(lines)


def _preview(label: str, data: bytes) -> str:
    shown = min(len(data), PREVIEW_BYTES)
    return f"{label:<16}{len(data)} bytes (first {shown} below)\n{hexdump(data[:PREVIEW_BYTES])}"


def hexdump(data: bytes, width: int = 16) -> str:
    """``0000  c3 01 ...  |..|`` lines; ``(empty)`` for no bytes."""
    if not data:
        return "  (empty)"
    lines = []
    for at in range(0, len(data), width):
        chunk = data[at : at + width]
        hexes = " ".join(f"{b:02x}" for b in chunk).ljust(width * 3 - 1)
        text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
        lines.append(f"  {at:04x}  {hexes}  |{text}|")
    return "\n".join(lines)


def show_bytes(data: bytes | None) -> str:
    """Printable UTF-8 as a quoted string; anything else as ``0x<hex>``; None as ``null``."""
    if data is None:
        return "null"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + data.hex()
    return repr(text) if text.isprintable() else "0x" + data.hex()


def format_micros(micros: int) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    try:
        return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except OverflowError:
        return f"{micros} (microseconds, out of range)"


def _clip(text: str, width: int) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def to_json(x: LocatedDeadLetter) -> dict[str, Any]:
    """JSON-ready dict of one letter; bytes (key, value, header values) as base64."""
    out: dict[str, Any] = {
        "dlq_topic": x.dlq_topic,
        "dlq_partition": x.dlq_partition,
        "dlq_offset": x.dlq_offset,
    }
    if x.letter is None:
        return out | {"problem": x.problem, "raw": _b64(x.raw)}
    d = x.letter
    return out | {
        "source_topic": d.source_topic,
        "partition": d.partition,
        "offset": d.offset,
        "reason_code": d.reason_code,
        "reason": d.reason,
        "agent": d.agent,
        "failed_at": format_micros(d.failed_at),
        "failed_at_micros": d.failed_at,
        "key": _b64(d.key),
        "value": _b64(d.value),
        "value_size": original_size(d),
        "value_kept_bytes": len(d.value),
        "value_truncated": d.value_truncated,
        "value_sha256": d.value_sha256,
        "key_truncated": d.key_truncated,
        "headers": [{"key": k, "value": _b64(v)} for k, v in d.headers],
        "headers_dropped": d.headers_dropped,
    }


def render_list(scan: DlqScan, as_json: bool) -> str:
    """What ``dlq list`` prints for ``scan`` (pure)."""
    if as_json:
        doc = {
            "dead_letters": [to_json(x) for x in scan.letters],
            "summary": summarize(scan.letters),
            "missing_topics": list(scan.missing),
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
    lines = [missing_message(", ".join(scan.missing))] if scan.missing else []
    if not scan.letters:
        return "\n".join(lines + ([f"no dead letters in {', '.join(scan.read)}"] if scan.read else []))
    reasons = summarize(scan.letters)["by_reason_code"]
    lines += [
        format_table(scan.letters),
        "",
        f"{len(scan.letters)} dead letter(s); by reason: "
        + ", ".join(f"{code} {n}" for code, n in reasons.items()),
    ]
    return "\n".join(lines)
