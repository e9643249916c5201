"""The edge's rule pack catalog (``GET /v1/policy/packs``): a ``PackBook`` of every tenant's
publications, kept up to date by a ``LogTail`` of ``policy.rules`` (only the records written since
its last read are read), and the checks of one tenant's versions in a pool of its own
(``CHECK_WORKERS`` threads, one job per tenant at a time)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from ledgerflow.api.pack_book import PackBook, PackVersion, publication
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.errors import DecodeError
from ledgerflow.kafka.logs import RawRecord
from ledgerflow.kafka.tail import LogTail
from ledgerflow.metrics import INDEX_RECORDS_READ
from ledgerflow.policy.signing import KeyLookup
from ledgerflow.topics import POLICY_RULES

log = logging.getLogger(__name__)

CHECK_WORKERS = 2
"""Threads the catalog checks publications in (one job per tenant at a time)."""
FOLD_BATCH = 32
"""``policy.rules`` records decoded per fold: a record may hold a document of hundreds of KB."""


class PackIndex:
    """The edge's catalog of every tenant's rule packs, read incrementally from ``policy.rules``."""

    def __init__(self, settings: Settings) -> None:
        self.book = PackBook()
        self.tail = LogTail(
            settings, settings.topic(POLICY_RULES), self._fold, batch=FOLD_BATCH, reset=self._new_log
        )
        self._pool = ThreadPoolExecutor(CHECK_WORKERS, thread_name_prefix="pack-checks")
        self._jobs: dict[str, asyncio.Future[list[PackVersion]]] = {}

    def _new_log(self) -> None:
        """The topic is a new log: nothing read from the old one is listed."""
        self.book = PackBook()

    def _fold(self, records: Sequence[RawRecord]) -> None:
        """Decode ``records`` (outside the lock), then add them to the book (inside it)."""
        found = []
        for rec in records:
            try:
                event = codec.decode(rec.value or b"", allowed_types=TOPIC_TYPES[POLICY_RULES])
                published = publication(event)
            except DecodeError:
                continue
            except Exception:  # one odd record must not stop every later one from being listed
                log.exception("rule pack catalog: %s[%d]@%d not listed", rec.topic, rec.partition, rec.offset)
                continue
            if published is not None:
                found.append((event.tenant, published))
        with self.tail.lock:
            for tenant, published in found:
                self.book.add(tenant, published)
        INDEX_RECORDS_READ.labels(POLICY_RULES).inc(len(records))

    async def catch_up(self) -> None:
        """Fold every record of ``policy.rules`` written before this call."""
        await self.tail.catch_up()

    def count(self, tenant: str) -> int:
        """How many versions of ``tenant`` are folded so far."""
        with self.tail.lock:
            return self.book.count(tenant)

    async def versions(
        self,
        tenant: str,
        lookup: KeyLookup | None,
        limit: int | None = None,
        before: int | None = None,
        version: int | None = None,
    ) -> list[PackVersion]:
        """``tenant``'s versions folded so far, newest first, each with its verdict: only those
        ``PackBook.publications`` selects (``limit``, ``before``, ``version``), so a page checks only
        its own. One job per tenant at a time: a listing waits for the job under way (its verdicts
        are then remembered), then runs its own (cheap when nothing changed)."""
        with self.tail.lock:
            mine = self.book.publications(tenant, limit, before, version)
        loop = asyncio.get_running_loop()
        while (running := self._jobs.get(tenant)) is not None and not running.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(running)
        job = loop.run_in_executor(self._pool, self.book.check, mine, lookup)
        self._jobs[tenant] = job
        job.add_done_callback(lambda done: self._forget(tenant, done))
        return await asyncio.shield(job)

    def _forget(self, tenant: str, done: asyncio.Future[list[PackVersion]]) -> None:
        if self._jobs.get(tenant) is done:
            del self._jobs[tenant]
        if not done.cancelled() and done.exception() is not None:
            log.error("rule pack catalog: checking %s's versions failed: %r", tenant, done.exception())

    async def close(self) -> None:
        await self.tail.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
