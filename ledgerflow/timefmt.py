"""The one time format of every JSON surface: RFC 3339, UTC, with microseconds and ``Z``.

Records carry integer microseconds since the epoch (the Avro contracts); what a reader gets
over HTTP, SSE or ``--json`` is ``2026-11-29T23:49:10.123456Z`` (docs/api.md).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def rfc3339(micros: int) -> str:
    """Microseconds since the epoch as ``2026-11-29T23:49:10.123456Z``."""
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339_seconds(seconds: float) -> str:
    """Seconds since the epoch (a JWT ``exp``) in the same format."""
    return rfc3339(round(seconds * 1_000_000))
