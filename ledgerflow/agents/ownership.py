"""Which input partitions a worker owns, made exclusive with the batch in flight.

The worker runs with ``stream_wait_empty=False``: faust's wait for every buffered event
to be acked can hang a rebalance forever when ``take_events`` holds events (faust #402 /
faust-streaming #133 — seen here as a survivor stuck in ``wait_empty`` after a SIGKILL).
Instead, each stateful agent:
1. processes a batch while holding ``lock``;
2. on revocation, takes ``lock`` (so the batch in flight finishes) and forgets the
   revoked partitions' state before the rebalance goes on;
3. on assignment, records the new partitions and forgets their state too (another worker
   may have written since), so it is recovered from the log on first use;
4. drops any buffered message of a partition it no longer owns: the new owner will
   process it from its committed offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Set as AbstractSet
from typing import Any, Protocol

import faust

Forget = Callable[[set[int]], None]

log = logging.getLogger(__name__)


class Ownership:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.lock = asyncio.Lock()
        self._assigned: set[int] | None = None  # None until the first assignment

    @property
    def assigned(self) -> set[int]:
        return set(self._assigned or ())

    def owned(self, messages: Sequence[Any]) -> list[Any]:
        """Step 4."""
        if self._assigned is None:
            return list(messages)
        return [m for m in messages if m.partition in self._assigned]

    def _mine(self, tps: Iterable[Any]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.topic}

    async def on_revoked(self, tps: Iterable[Any], forget: Forget) -> None:
        """Step 2 (``tps``: objects with ``topic`` and ``partition``)."""
        async with self.lock:
            mine = self._mine(tps)
            if self._assigned is not None:
                self._assigned -= mine
            forget(mine)

    async def on_assigned(self, tps: Iterable[Any], forget: Forget) -> None:
        """Step 3."""
        async with self.lock:
            mine = self._mine(tps)
            self._assigned = mine
            forget(mine)

    def connect(self, app: faust.App, forget: Forget) -> None:
        """Steps 2 and 3 on the faust App's rebalances (the agents faust runs)."""

        # faust sends the partitions positionally; its Signal type declares only ``*args``.
        @app.on_partitions_revoked.connect  # type: ignore[arg-type]
        async def on_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
            await self.on_revoked(revoked, forget)

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def on_assigned(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
            await self.on_assigned(assigned, forget)


class TimedAgent(Protocol):
    """An agent with per-partition state, a batch handler and a periodic tick."""

    input_topic: str

    def revoke(self, partitions: set[int]) -> None: ...
    def use_lock(self, lock: asyncio.Lock) -> None: ...
    async def handle(self, messages: Sequence[Any]) -> None: ...
    async def tick(self, assigned: AbstractSet[int] = frozenset()) -> None:
        """Time-driven work; ``assigned``: the partitions this worker owns, held in memory or not."""
        ...


def register_timed(
    app: faust.App,
    agent: TimedAgent,
    *,
    name: str,
    batch: int,
    within: float,
    tick_s: float,
) -> Ownership:
    """Run ``agent`` as a faust agent over its owned partitions, plus a timer for ``tick``.

    Batches, ticks and rebalances share the ownership lock, so they never interleave.
    """
    from ledgerflow.agents.app import handle_until_done, raw_topic, run_batches

    ownership = Ownership(agent.input_topic)
    ownership.connect(app, agent.revoke)
    agent.use_lock(ownership.lock)

    async def owned(messages: list[Any]) -> None:
        await handle_until_done(
            messages, name=name, lock=None, owned=ownership.owned, handle=agent.handle, forget=agent.revoke
        )

    async def body(stream: faust.StreamT[Any]) -> None:
        await run_batches(stream, batch, within, owned)

    async def tick() -> None:
        try:
            await agent.tick(ownership.assigned)
        except Exception as exc:  # forget what the tick may have staged; recovered from the log
            agent.revoke(ownership.assigned)
            log.warning("%s: tick failed (%r); owned partitions will be recovered from the log", name, exc)

    app.agent(raw_topic(app, agent.input_topic), name=name, concurrency=1)(body)
    app.timer(interval=tick_s, name=f"{name}.tick")(tick)
    return ownership
