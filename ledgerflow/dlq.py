"""Reading dead letters back: ``ledgerflow dlq list`` and ``ledgerflow dlq show``.

Agents write every record they cannot decode or validate to ``<prefix><topic>.dlq`` as a
``DeadLetter`` (see docs/dead-letters.md). This module reads those topics with a plain
aiokafka consumer — no consumer group, so reading never moves anyone's offsets:

1. describe the cluster's topics once; a DLQ topic that does not exist is reported, not
   created;
2. assign every partition of the wanted DLQ topics and take their beginning and end
   offsets *now* — records that arrive later are not read;
3. seek each partition to the start of its window and fetch until the window is read;
4. decode each value with ``decode_dead_letter``; a DLQ record that itself does not
   decode is kept, with the problem, rather than dropped.

Formatting (``summarize``, ``format_table``, ``format_detail``, ``to_json``) is pure.
"""

from __future__ import annotations

import asyncio
import base64
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ledgerflow.config import Settings
from ledgerflow.contracts.codec import decode_dead_letter
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.errors import DecodeError, InfrastructureError, ValidationError
from ledgerflow.topics import DLQ_SUFFIX, DLQ_TOPICS

READ_TIMEOUT_S = 30.0
PREVIEW_BYTES = 64
UNREADABLE = "unreadable-dead-letter"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Window = Callable[[int, int], tuple[int, int]]
"""(beginning offset, end offset) of a partition -> [start, stop) offsets to read."""


@dataclass(frozen=True, slots=True)
class LocatedDeadLetter:
    """A dead letter and where it sits in its DLQ topic.

    ``letter`` is None only when the DLQ record itself does not decode; ``problem`` then
    says why and ``raw`` holds its bytes.
    """

    dlq_topic: str
    dlq_partition: int
    dlq_offset: int
    letter: DeadLetter | None
    raw: bytes = b""
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class DlqScan:
    """What a read found: the letters, and the DLQ topics that do not exist."""

    letters: tuple[LocatedDeadLetter, ...]
    read: tuple[str, ...]
    missing: tuple[str, ...]


def dlq_topic_names(settings: Settings, topic: str | None = None) -> list[str]:
    """Full DLQ topic names: of ``topic`` (a base name like ``conversation.events``), or all."""
    if topic is None:
        return [settings.topic(spec.base) for spec in DLQ_TOPICS]
    base = topic.removesuffix(DLQ_SUFFIX)
    if not base:
        raise ValidationError("--topic: give a topic base name such as conversation.events")
    return [settings.topic(base + DLQ_SUFFIX)]


def latest_window(limit: int | None) -> Window:
    """Everything, or the newest ``limit`` records of each partition."""
    if limit is not None and limit < 1:
        raise ValidationError(f"--limit: {limit} must be 1 or more")
    return lambda begin, end: (begin if limit is None else max(begin, end - limit), end)


def offset_window(offset: int) -> Window:
    """Exactly the record at ``offset`` (nothing when it is outside the partition)."""
    return lambda begin, end: (offset, offset + 1) if begin <= offset < end else (end, end)


async def scan_dead_letters(
    settings: Settings, topic: str | None = None, limit: int | None = None
) -> DlqScan:
    """The dead letters now in the DLQ of ``topic`` (all DLQ topics when None).

    With ``limit``, the newest ``limit`` letters overall (by ``failed_at``), in DLQ order.
    """
    scan = await _scan(settings, dlq_topic_names(settings, topic), latest_window(limit))
    if limit is not None:
        scan = DlqScan(newest(scan.letters, limit), scan.read, scan.missing)
    return scan


async def read_dead_letters(
    settings: Settings, topic: str | None = None, limit: int | None = None
) -> list[LocatedDeadLetter]:
    """The dead letters now in the DLQ of ``topic`` (base name; None = every DLQ topic)."""
    return list((await scan_dead_letters(settings, topic, limit)).letters)


async def read_dead_letter_at(
    settings: Settings, topic: str, offset: int, partition: int = 0
) -> LocatedDeadLetter | None:
    """The dead letter at ``offset`` of the DLQ of ``topic``, or None if there is none."""
    scan = await _scan(settings, dlq_topic_names(settings, topic), offset_window(offset))
    if scan.missing:
        raise ValidationError(_missing_message(scan.missing[0]))
    found = [x for x in scan.letters if x.dlq_partition == partition and x.dlq_offset == offset]
    return found[0] if found else None


async def _scan(settings: Settings, names: Sequence[str], window: Window) -> DlqScan:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    consumer: AIOKafkaConsumer | None = None
    started: list[Any] = []
    try:
        # Step 1. Which DLQ topics exist, and their partitions.
        started.append(admin)
        await admin.start()
        described = {t["topic"]: t for t in await admin.describe_topics(None) if not t["error_code"]}
        read = tuple(n for n in names if n in described)
        missing = tuple(n for n in names if n not in described)
        tps = [TopicPartition(n, p["partition"]) for n in read for p in described[n]["partitions"]]
        if not tps:
            return DlqScan((), read, missing)
        # Step 2. The window of each partition, fixed now.
        consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="ledgerflow-dlq",
            request_timeout_ms=15000,
        )
        started.append(consumer)
        await consumer.start()
        consumer.assign(tps)
        begins = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        bounds = {tp: window(begins[tp], ends[tp]) for tp in tps}
        bounds = {tp: (start, stop) for tp, (start, stop) in bounds.items() if start < stop}
        # Steps 3 and 4.
        records = await _fetch(consumer, bounds) if bounds else []
        letters = sorted((_locate(r) for r in records), key=_position)
        return DlqScan(tuple(letters), read, missing)
    except KafkaError as exc:
        raise InfrastructureError(
            f"could not read dead letters from Kafka at {settings.kafka_bootstrap}: {exc!r}. "
            "Operator action: check that the broker runs (`ledgerflow stack status`) or set "
            "LEDGERFLOW_KAFKA_BOOTSTRAP / --kafka"
        ) from None
    finally:
        for client in reversed(started):
            await (client.stop() if client is consumer else client.close())


async def _fetch(consumer: AIOKafkaConsumer, bounds: dict[TopicPartition, tuple[int, int]]) -> list[Any]:
    consumer.assign(list(bounds))
    for tp, (start, _) in bounds.items():
        consumer.seek(tp, start)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READ_TIMEOUT_S
    pending = dict(bounds)
    out: list[Any] = []
    while pending:
        if loop.time() > deadline:
            left = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in pending)
            raise InfrastructureError(
                f"reading dead letters timed out after {READ_TIMEOUT_S:.0f} s; unread: {left}. "
                "Operator action: check the broker's health and retry"
            )
        batch = await consumer.getmany(*pending, timeout_ms=500)
        for tp, records in batch.items():
            start, stop = bounds[tp]
            out += [r for r in records if start <= r.offset < stop]
        for tp in list(pending):
            if await consumer.position(tp) >= pending[tp][1]:
                del pending[tp]
                consumer.pause(tp)
    return out


def _locate(record: Any) -> LocatedDeadLetter:
    raw = bytes(record.value or b"")
    try:
        letter: DeadLetter | None = decode_dead_letter(raw)
        problem = None
    except DecodeError as exc:
        letter, problem = None, exc.reason
    return LocatedDeadLetter(record.topic, record.partition, record.offset, letter, raw, problem)


def _position(x: LocatedDeadLetter) -> tuple[str, int, int]:
    return (x.dlq_topic, x.dlq_partition, x.dlq_offset)


def _missing_message(names: str) -> str:
    return (
        f"DLQ topic(s) {names} do not exist (yet). Check the topic name and LEDGERFLOW_TOPIC_PREFIX; "
        "`ledgerflow worker` and `ledgerflow stack up` create the DLQ topics"
    )


def newest(letters: Iterable[LocatedDeadLetter], limit: int) -> tuple[LocatedDeadLetter, ...]:
    """The ``limit`` most recently failed letters (by ``failed_at``), in DLQ position order."""
    chosen = sorted(letters, key=lambda x: (x.letter.failed_at if x.letter else -1, *_position(x)))
    chosen = chosen[-limit:] if limit > 0 else []
    return tuple(sorted(chosen, key=_position))


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


def dlq_cli(
    settings: Settings,
    action: str,
    topic: str | None,
    limit: int | None,
    offset: int | None,
    as_json: bool,
) -> int:
    """``ledgerflow dlq list [--topic T] [--limit N] [--json]`` / ``dlq show --topic T --offset N``.

    Prints to stdout. Returns 0 when it printed what was asked (an empty DLQ included), 1
    when the DLQ topic or the offset does not exist.
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
            print(exc)
            return 1
        if found is None:
            print(
                f"no dead letter at offset {offset} of {dlq_topic_names(settings, topic)[0]}; "
                f"`ledgerflow dlq list --topic {topic}` shows the offsets there are"
            )
            return 1
        print(
            orjson.dumps(to_json(found), option=orjson.OPT_INDENT_2).decode()
            if as_json
            else format_detail(found)
        )
        return 0
    raise ValidationError(f"dlq: unknown action {action!r}; use list or show")


def render_list(scan: DlqScan, as_json: bool) -> str:
    """What ``dlq list`` prints for ``scan`` (pure)."""
    if as_json:
        doc = {
            "dead_letters": [to_json(x) for x in scan.letters],
            "summary": summarize(scan.letters),
            "missing_topics": list(scan.missing),
        }
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode()
    lines = [_missing_message(", ".join(scan.missing))] if scan.missing else []
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
