"""Dead letters that always fit: the pure shaping every writer of ``<topic>.dlq`` uses.

Shaping (``shape_dead_letter``):
1. The value is kept whole when it is at most ``MAX_INPUT_RECORD_BYTES`` (the largest
   record an agent decodes); a larger one is kept by reference: its first
   ``MAX_DEAD_LETTER_PREFIX_BYTES``, ``value_truncated``, and always its SHA-256 and size.
2. The key is kept whole up to ``MAX_DEAD_LETTER_KEY_BYTES`` (else a prefix,
   ``key_truncated``); headers are kept in order while their names and values add up to
   at most ``MAX_DEAD_LETTER_HEADER_BYTES`` (the rest are counted in ``headers_dropped``);
   the reason is cut to ``MAX_REASON_CHARS``.
3. If the encoded letter were still over ``MAX_DEAD_LETTER_BYTES`` (it cannot be with the
   limits above; the check keeps it so if they change), it is reshaped to the bare
   reference: position, reason, digest, size, a value prefix, no headers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from ledgerflow.contracts.codec import encode_dead_letter, reason_code
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.limits import MAX_DEAD_LETTER_PREFIX_BYTES, MAX_INPUT_RECORD_BYTES, PRODUCER_MAX_REQUEST_BYTES

__all__ = [
    "EVALUATION_FAILED",
    "MAX_DEAD_LETTER_BYTES",
    "MAX_DEAD_LETTER_HEADER_BYTES",
    "MAX_DEAD_LETTER_KEY_BYTES",
    "MAX_REASON_CHARS",
    "bare_reference",
    "evaluation_failed",
    "headers_of",
    "shape_dead_letter",
]

MAX_DEAD_LETTER_KEY_BYTES = 1024
"""Longest key a dead letter keeps whole (ids are at most 128 bytes)."""
MAX_DEAD_LETTER_HEADER_BYTES = 16 * 1024
"""Total header names + values a dead letter keeps."""
MAX_REASON_CHARS = 2000
"""Longest reason text kept."""
MAX_DEAD_LETTER_BYTES = MAX_INPUT_RECORD_BYTES + 64 * 1024
"""Largest encoded dead letter (value + key + headers + reason + fields), far below the
producer's ``PRODUCER_MAX_REQUEST_BYTES``."""
assert MAX_DEAD_LETTER_BYTES + MAX_DEAD_LETTER_KEY_BYTES < PRODUCER_MAX_REQUEST_BYTES // 2

EVALUATION_FAILED = "evaluation-failed"


def evaluation_failed(exc: BaseException) -> str:
    """The dead-letter reason for a record that decoded but could not be evaluated."""
    return f"{EVALUATION_FAILED}: {type(exc).__name__}: {exc}"


def shape_dead_letter(
    *,
    source_topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    headers: Iterable[tuple[str, bytes | None]],
    reason: str,
    agent: str,
    failed_at: int,
) -> DeadLetter:
    """A dead letter that always fits (see the module docstring, steps 1 to 3)."""
    data = bytes(value or b"")
    # Step 1.
    truncated = len(data) > MAX_INPUT_RECORD_BYTES
    kept = data[:MAX_DEAD_LETTER_PREFIX_BYTES] if truncated else data
    # Step 2.
    key_truncated = key is not None and len(key) > MAX_DEAD_LETTER_KEY_BYTES
    kept_key = key[:MAX_DEAD_LETTER_KEY_BYTES] if key is not None and key_truncated else key
    all_headers = list(headers)
    kept_headers: list[tuple[str, bytes | None]] = []
    budget = MAX_DEAD_LETTER_HEADER_BYTES
    for name, header_value in all_headers:
        cost = len(name.encode("utf-8", "replace")) + len(header_value or b"")
        if cost > budget:
            break
        budget -= cost
        kept_headers.append((name, header_value))
    text = reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"
    letter = DeadLetter(
        source_topic=source_topic,
        partition=partition,
        offset=offset,
        key=kept_key,
        value=kept,
        headers=tuple(kept_headers),
        reason=text,
        reason_code=reason_code(text),
        failed_at=failed_at,
        agent=agent,
        value_sha256=hashlib.sha256(data).hexdigest(),
        value_size=len(data),
        value_truncated=truncated,
        key_truncated=key_truncated,
        headers_dropped=len(all_headers) - len(kept_headers),
    )
    # Step 3.
    if len(encode_dead_letter(letter)) > MAX_DEAD_LETTER_BYTES:
        letter = bare_reference(letter, len(all_headers))
    return letter


def bare_reference(letter: DeadLetter, header_count: int | None = None) -> DeadLetter:
    """The smallest honest form of ``letter``: where, why, digest, size and a short prefix."""
    dropped = len(letter.headers) + letter.headers_dropped if header_count is None else header_count
    return replace(
        letter,
        value=letter.value[:MAX_DEAD_LETTER_PREFIX_BYTES],
        value_truncated=letter.value_truncated or len(letter.value) > MAX_DEAD_LETTER_PREFIX_BYTES,
        headers=(),
        headers_dropped=dropped,
        reason=letter.reason[:200],
    )


def headers_of(headers: Any) -> Iterable[tuple[str, bytes | None]]:
    """(name, value) pairs of a record's headers: a mapping or a sequence of pairs, names as text."""
    items = headers.items() if hasattr(headers, "items") else (headers or ())
    for key, value in items:
        yield (key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)), value
