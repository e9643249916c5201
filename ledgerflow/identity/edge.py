"""An edge's refused authentications on ``identity.audit``: one ``AuthRefusals`` record per window.

The authentication backend calls ``count`` for every refusal (no I/O: a counter); a task
started in the edge's lifespan writes the window's record at each window boundary
(``LEDGERFLOW_AUTH_REFUSALS_WINDOW_S``, default 60 s) and once more at shutdown. Records
are linked when their window closes and queued; one Kafka did not acknowledge stays at the
head of the queue and is sent again first, so the chain never skips or forks; one still on its way
when a flush is cancelled (the edge stopping) is awaited, not sent a second time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import socket
import time
from collections.abc import Mapping
from typing import Any

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import ANY_TENANT, Event
from ledgerflow.envnumbers import DAY_S, env_whole
from ledgerflow.errors import LedgerflowError
from ledgerflow.identity.records import EDGE_CHAIN_PREFIX
from ledgerflow.identity.refusals import RefusalWindow, claimed_tenant, reason_of
from ledgerflow.identity.trail import ChainWriter
from ledgerflow.topics import IDENTITY_AUDIT

log = logging.getLogger(__name__)

WINDOW_ENV = "LEDGERFLOW_AUTH_REFUSALS_WINDOW_S"
DEFAULT_WINDOW_S = 60


def refusals_window_from(environ: Mapping[str, str]) -> int:
    """Pure: ``LEDGERFLOW_AUTH_REFUSALS_WINDOW_S``, whole seconds from 1 to a day (default 60)."""
    return env_whole(environ, WINDOW_ENV, DEFAULT_WINDOW_S, 1, int(DAY_S), unit="whole seconds")


def edge_chain_id() -> str:
    """``edge:<host>:<pid>:<start>``, in the id grammar (a restarted edge starts a new chain)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:60] or "host"
    return f"{EDGE_CHAIN_PREFIX}{host}:{os.getpid()}:{int(time.time())}"


class RefusalRecorder:
    def __init__(self, settings: Settings, window_s: int | None = None) -> None:
        self.settings = settings
        self.window_s = window_s or refusals_window_from(os.environ)
        self.writer = ChainWriter(edge_chain_id())
        self.window = RefusalWindow()
        self.window_start = self._boundary(time.time())
        self.queue: list[Event] = []
        self.producer: Any = None
        self._sending: asyncio.Future[Any] | None = None  # the delivery of ``queue[0]``, once handed over

    def count(self, exc: LedgerflowError, token: str | None) -> None:
        self.window.add(reason_of(exc), claimed_tenant(token))

    async def run(self, producer: Any) -> None:
        """Until cancelled: write each window's record at its end."""
        self.producer = producer
        while True:
            await asyncio.sleep(max(0.0, self.window_start + self.window_s - time.time()))
            await self.flush()

    async def flush(self) -> None:
        """Close the current window and write its record (and any unsent one before it)."""
        record = self.window.drain(self.writer.chain_id, self.window_start * 1_000_000, self.window_s)
        self.window_start = self._boundary(time.time())
        if record is not None:
            linked = self.writer.link(ANY_TENANT, record, time.time_ns() // 1000)
            self.writer.advance(linked)  # queued records are sent strictly in order
            self.queue.append(linked)
        topic = self.settings.topic(IDENTITY_AUDIT)
        while self.queue and self.producer is not None:
            try:
                if self._sending is None:
                    self._sending = await self.producer.send(
                        topic, codec.encode(self.queue[0]), key=self.writer.chain_id.encode()
                    )
                # Shielded: a flush cancelled here (the edge stopping) leaves the record with the
                # producer, which still sends it; the next flush awaits it instead of sending it again.
                await asyncio.shield(self._sending)
            except Exception as exc:  # Kafka down: sent again at the next window
                self._sending = None
                log.warning(
                    "identity.audit: writing refused-authentication counts failed (%r); retrying", exc
                )
                return
            self._sending = None
            self.queue.pop(0)

    def _boundary(self, now: float) -> int:
        return int(now // self.window_s * self.window_s)
