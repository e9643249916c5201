"""Topics the integration tests leave behind, dropped when the next session starts.

Every test gets its own topic prefix (``t`` and ten hex digits, ``tests/integration/conftest.py``)
and its topics are not deleted one by one (that would add an admin round trip to each of hundreds
of tests). The test stack's Kafka keeps its data between sessions, though, and a broker holds an
open file per partition: after a handful of local ``make test`` runs it had ~19,000 partitions and
stopped with "Too many open files" (its limit here is 20,000). So a session starts by deleting
what earlier sessions left — only names of that shape, and never on services the user pointed the
tests at.
"""

from __future__ import annotations

import re

from aiokafka.admin import AIOKafkaAdminClient

LEFT_BY_A_TEST = re.compile(r"^t[0-9a-f]{10}\.")
CHUNK = 500  # topics per DeleteTopics request


def left_by_tests(names: list[str]) -> list[str]:
    """The names a test's prefix made (pure)."""
    return sorted(n for n in names if LEFT_BY_A_TEST.match(n))


async def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Delete ``names`` on the broker at ``bootstrap`` (a test's own topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def drop_left_topics(bootstrap: str) -> int:
    """Delete the topics earlier test sessions left on the broker at ``bootstrap``; how many."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60_000)
    await admin.start()
    try:
        doomed = left_by_tests(list(await admin.list_topics()))
        for i in range(0, len(doomed), CHUNK):
            await admin.delete_topics(doomed[i : i + CHUNK], timeout_ms=60_000)
        return len(doomed)
    finally:
        await admin.close()
