"""``ledgerflow worker`` (or the naive agent) with its Redis round trips counted, run as
its own process:

    python -m ledgerflow.bench.counted_worker --counters FILE [--target worker|naive]

The worker does not serve ``/metrics``, and Redis' own counters (``INFO commandstats``)
count commands, not round trips (a pipeline of 500 EVALSHA is 500 commands and one
round trip), and they include every other client of a shared Redis. So this wrapper
counts on the client side, in the worker process: every ``Redis.execute_command`` on a
client (one command, one round trip) and every ``Pipeline.execute`` (one round trip
carrying ``len(command_stack)`` commands), then runs the unchanged worker
(``ledgerflow.agents.runner.run_worker``) or the naive agent
(``ledgerflow.bench.naive_agent``). The counts are written to ``FILE`` as JSON
every 250 ms by a daemon thread. The cost is one integer increment per round trip.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from pathlib import Path
from typing import Any

from redis.asyncio.client import Pipeline, Redis

COUNTS = {"round_trips": 0, "commands": 0}
AGENTS = "policy,projector"  # the path the figures measure: decode → decide → produce → project


def install() -> None:
    """Wrap the async Redis client's two network entry points with counters."""
    plain = Redis.execute_command
    pipelined = Pipeline.execute

    async def execute_command(self: Redis, *args: Any, **options: Any) -> Any:
        COUNTS["round_trips"] += 1
        COUNTS["commands"] += 1
        return await plain(self, *args, **options)  # type: ignore[no-untyped-call]

    async def execute(self: Pipeline, raise_on_error: bool = True) -> Any:
        if self.command_stack:
            COUNTS["round_trips"] += 1
            COUNTS["commands"] += len(self.command_stack) + (2 if self.is_transaction else 0)
        return await pipelined(self, raise_on_error)

    Redis.execute_command = execute_command  # type: ignore[method-assign]
    Pipeline.execute = execute  # type: ignore[method-assign]


def _dump_forever(path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    while True:
        tmp.write_text(json.dumps(COUNTS))
        tmp.replace(path)
        time.sleep(0.25)


def read_counts(path: Path) -> dict[str, int]:
    """The latest counts a counted worker wrote (zeros before its first write)."""
    try:
        counts: dict[str, int] = json.loads(path.read_text())
        return counts
    except (OSError, ValueError):
        return {"round_trips": 0, "commands": 0}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m ledgerflow.bench.counted_worker")
    p.add_argument("--counters", required=True, type=Path)
    p.add_argument("--target", choices=["worker", "naive"], default="worker")
    p.add_argument("--agents", default=AGENTS, help=f"the worker's agents (default {AGENTS})")
    args = p.parse_args(argv)
    install()
    threading.Thread(target=_dump_forever, args=(args.counters,), daemon=True).start()
    if args.target == "naive":
        from ledgerflow.bench import naive_agent

        naive_agent.main()
        return
    from ledgerflow.agents.runner import run_worker
    from ledgerflow.config import load_settings

    run_worker(load_settings(), agents=args.agents)


if __name__ == "__main__":
    main()
