"""The edge's training history (``GET /v1/training/history``): every tenant's ``training.audit``
chain, folded record by record from a ``LogTail`` (only the records written since its last read
are read) into a ``TenantChain`` per tenant and partition: a ``contracts.chain.ChainVerifier``
walking the chain from its start, the training mode after each record and the rows of its last
``MAX_LIMIT`` records (no request asks for more)."""

from __future__ import annotations

import copy
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ledgerflow.api.paging import rfc3339
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.chain import ChainVerifier, Located
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.payloads import TrainingDisabled, TrainingEnabled, TrainingExpired, TrainingRejected
from ledgerflow.errors import DecodeError, ValidationError
from ledgerflow.kafka.logs import RawRecord
from ledgerflow.kafka.placement import placement
from ledgerflow.kafka.tail import LogTail
from ledgerflow.metrics import INDEX_RECORDS_READ
from ledgerflow.topics import TRAINING_AUDIT

log = logging.getLogger(__name__)

MAX_LIMIT = 1000
_MODES = {"TrainingEnabled": "enabled", "TrainingDisabled": "disabled", "TrainingExpired": "disabled"}


@dataclass(slots=True)
class _Row:
    partition: int
    offset: int
    fields: dict[str, Any]
    broken: bool


@dataclass(slots=True)
class TenantChain:
    """One tenant's records in one partition, folded in log order (pure: no I/O)."""

    keep: int = MAX_LIMIT
    verifier: ChainVerifier = field(default_factory=ChainVerifier)
    mode: str = "disabled"
    rows: deque[_Row] = field(init=False)

    def __post_init__(self) -> None:
        self.rows = deque(maxlen=self.keep)

    def add(self, at: Located) -> None:
        """Fold the next record (``record``: the event's JSON form)."""
        record = at.record
        payload = record.get("payload") or {}
        self.mode = _MODES.get(str(record.get("type")), self.mode)
        expires = payload.get("expires_at")
        row = {
            "sequence": record.get("sequence"),
            "type": record.get("type"),
            "occurred_at": record.get("occurred_at"),
            "actor": payload.get("actor"),
            "mode": self.mode,
            "expires_at": _time(expires) if self.mode == "enabled" else None,
            "hash": record.get("hash"),
            "prev_hash": record.get("prev_hash"),
        }
        broken = self.verifier.feed(at) is not None
        self.rows.append(_Row(at.partition, at.offset, row, broken))

    def newest(self, limit: int) -> list[dict[str, Any]]:
        """The last ``limit`` rows (at most ``keep``), newest first, with their chain status now."""
        pending = {(b.partition, b.offset) for b in copy.deepcopy(self.verifier).finish()}
        out = []
        for row in list(self.rows)[::-1][:limit]:
            broken = row.broken or (row.partition, row.offset) in pending
            out.append({**row.fields, "chain": "broken" if broken else "ok"})
        return out


def history(records: Sequence[Located], tenant: str) -> list[dict[str, Any]]:
    """The rows of ``tenant``'s records (``Located`` in log order, decoded with ``record`` the
    event's JSON form), oldest first; ``mode`` is the state after the record."""
    mine = [r for r in records if r.key == tenant and r.record.get("tenant") == tenant]
    chain = TenantChain(keep=max(len(mine), 1))
    for at in mine:
        chain.add(at)
    return chain.newest(len(mine))[::-1]


def _time(value: object) -> str | None:
    """A record's time field (µs, or already RFC 3339 in the record's JSON form) as RFC 3339."""
    if isinstance(value, int) and not isinstance(value, bool):
        return rfc3339(value)
    return value if isinstance(value, str) else None


def located(rec: RawRecord) -> Located | None:
    """``rec`` as its tenant's history sees it, or None when it is nobody's (undecodable, not a
    training outcome, or its key, subject and tenant disagree)."""
    try:
        tenant = (rec.key or b"").decode()
        event = codec.decode(rec.value or b"", allowed_types=TOPIC_TYPES[TRAINING_AUDIT])
        body = event.to_json()
    except (UnicodeDecodeError, DecodeError, ValidationError):
        return None
    if not isinstance(event.payload, TrainingEnabled | TrainingDisabled | TrainingExpired | TrainingRejected):
        return None
    if not tenant or event.subject != tenant or event.tenant != tenant:
        return None
    return Located(rec.topic, rec.partition, rec.offset, tenant, body)


class TrainingIndex:
    """Every tenant's training history on this edge, read incrementally from ``training.audit``."""

    def __init__(self, settings: Settings) -> None:
        self.tail = LogTail(settings, settings.topic(TRAINING_AUDIT), self._fold, reset=self._forget)
        self._chains: dict[tuple[str, int], TenantChain] = {}  # (tenant, partition) -> its chain

    def _forget(self) -> None:
        """The topic is a new log: nothing read from the old one is shown."""
        self._chains = {}

    def _fold(self, records: Sequence[RawRecord]) -> None:
        """Decode ``records`` (outside the lock), then walk their chains (inside it)."""
        found = []
        for rec in records:
            try:
                at = located(rec)
            except Exception:  # one odd record must not stop every later one from being shown
                log.exception("training history: %s[%d]@%d not shown", rec.topic, rec.partition, rec.offset)
                continue
            if at is not None:
                found.append(at)
        with self.tail.lock:
            for at in found:
                chain = self._chains.get((at.key, at.partition))
                if chain is None:
                    chain = self._chains[(at.key, at.partition)] = TenantChain()
                try:
                    chain.add(at)
                except Exception:  # one odd record must not stop every later one from being shown
                    log.exception("training history: %s[%d]@%d not shown", at.topic, at.partition, at.offset)
        INDEX_RECORDS_READ.labels(TRAINING_AUDIT).inc(len(records))

    async def catch_up(self) -> None:
        """Fold every record of ``training.audit`` written before this call."""
        await self.tail.catch_up()

    def newest(self, tenant: str, limit: int) -> list[dict[str, Any]]:
        """``tenant``'s last ``limit`` rows folded so far, newest first: those of the partition its
        key belongs in."""
        partition = placement(tenant.encode(), max(self.tail.partitions(), 1))
        with self.tail.lock:
            chain = self._chains.get((tenant, partition))
            return [] if chain is None else chain.newest(limit)

    async def close(self) -> None:
        await self.tail.close()
