"""A page of ``GET /v1/conversations`` after a cursor reads its own entries only, however many
conversations share the cursor's score, on the real Redis.

Anyone who writes Kafka sets the times of their events, so any number of conversations can share
one score. A page after a cursor read every conversation tied with it (``ZCOUNT`` of the score,
then ``ZREVRANGEBYSCORE`` of ties + limit entries): 3,000 ties, 3,000 entries per page; paging
through N ties read N² entries. Now a page reads from the cursor's rank while its conversation
keeps the cursor's score, and by score (ties and all) only when that conversation moved on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from ledgerflow.api.conversation_list import Entry, page_after, ranked_after
from ledgerflow.api.paging import Cursor
from ledgerflow.config import Settings
from ledgerflow.redisvalues import text

TIES = 3000
NEWER = 10
SCORE = 1_700_000_000_000_000
LIMIT = 50


class Counting(aioredis.Redis):
    """The real client, counting the entries of the largest list any command answered."""

    largest = 0

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        reply = await super().execute_command(*args, **options)
        if isinstance(reply, list):
            self.largest = max(self.largest, len(reply))
        return reply


async def _walk(client: Counting, index: str, move_cursor_after: int | None = None) -> list[str]:
    seen: list[str] = []
    after: Cursor | None = None
    pages = 0
    while True:
        ranked = await ranked_after(client, index, after, LIMIT + 1)
        entries: list[Entry] = page_after(ranked, after, LIMIT + 1)
        more, entries = len(entries) > LIMIT, entries[:LIMIT]
        seen += [e.conversation_id for e in entries]
        pages += 1
        if not more:
            return seen
        after = Cursor(entries[-1].last_activity, entries[-1].conversation_id)
        if pages == move_cursor_after:  # the cursor's conversation gets new activity
            await client.zadd(index, {after.member: SCORE + 10_000})


def test_pages_after_a_cursor_read_only_their_entries_among_thousands_of_ties(settings: Settings) -> None:
    async def run() -> None:
        client = Counting.from_url(settings.redis_url)
        index = f"{settings.topic_prefix}ties-test"
        try:
            await client.zadd(index, {f"c{i:05d}": SCORE for i in range(TIES)})
            await client.zadd(index, {f"n{i}": SCORE + 1 + i for i in range(NEWER)})
            everything = [text(m) for m in await client.zrevrange(index, 0, -1)]
            client.largest = 0
            assert await _walk(client, index) == everything
            assert client.largest <= 2 * (LIMIT + 1), f"a page read {client.largest} entries"

            # The cursor's conversation moved on: the page after it reads by score (ties and
            # all, once), skipping nothing and repeating nothing of what is still below it.
            walked = await _walk(client, index, move_cursor_after=3)
            moved = walked[3 * LIMIT - 1]
            assert len(walked) == len(set(walked)) == TIES + NEWER
            assert set(walked) == set(everything) and moved in walked
        finally:
            await client.delete(index)
            await client.aclose()

    asyncio.run(run())
