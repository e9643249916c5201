"""What the zombie fence costs a batch: the latency of the proving commit (``KafkaSource.current``).

Joins the hot path's group alone on a fresh topic prefix, takes one batch, then proves
ownership ``--rounds`` times with the batch's offsets and prints the median, p95 and max in
milliseconds. Run with the settings in the environment::

    LEDGERFLOW_KAFKA_BOOTSTRAP=127.0.0.1:39092 LEDGERFLOW_REDIS_URL=redis://127.0.0.1:36379/0 \\
        .venv/bin/python -m tests.support.fence_cost --rounds 300
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from typing import Any

from ledgerflow.agents.batching import Route
from ledgerflow.agents.batchloop import BatchLoop, KafkaSource
from ledgerflow.agents.fence import first_offsets
from ledgerflow.config import load_settings
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.topics import CONVERSATION_EVENTS
from ledgerflow.traffic import interleaved, publish


async def measure(rounds: int) -> list[float]:
    settings = load_settings().with_overrides(topic_prefix=f"fence{uuid.uuid4().hex[:8]}.")
    await ensure_topics(settings)
    events = interleaved(random.Random(1), ["acme"], 200, time.time_ns() // 1000, open_at_once=8)
    await publish(settings, iter(events), progress_every_s=0)

    async def ignore(records: list[Any]) -> None:
        return None

    source = KafkaSource(settings)
    loop = BatchLoop(source, [Route("none", frozenset({settings.topic(CONVERSATION_EVENTS)}), ignore)])
    await source.start(loop)
    try:
        fetched: dict[Any, Any] = {}
        while not fetched:
            fetched = dict(await source.getmany(1000, 500))
        offsets = dict(first_offsets(fetched))
        took = []
        for _ in range(rounds):
            began = time.perf_counter()
            assert await source.current(offsets), "this member is alone in its group: it must be current"
            took.append((time.perf_counter() - began) * 1000)
        return took
    finally:
        await source.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=300)
    took = sorted(asyncio.run(measure(parser.parse_args().rounds)))
    p95 = took[int(len(took) * 0.95) - 1]
    print(
        f"proving commit: {len(took)} rounds, median {statistics.median(took):.2f} ms, "
        f"p95 {p95:.2f} ms, max {took[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main()
