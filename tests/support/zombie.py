"""A policy worker that SIGSTOPs itself on its first write of decisions: the zombie of
tests/integration/test_zombie_fence.py.

It is the real hot path (``BatchLoop`` + ``KafkaSource`` + the policy agent wired by
``policy.attach``, its output fenced as in a worker); only the agent's output port is
wrapped, so the process stops with a decided batch not yet written — a worker starved of CPU
at the worst moment. Only the broker's fence (``kafka/fenced.py``) can refuse that write: the
group check (``agents/fence.py``) guards claims, not writes. Run with
``python -m tests.support.zombie`` and the settings in the environment (``ledgerflow.demo.child_env``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Sequence

from ledgerflow.agents import layout, policy
from ledgerflow.agents.app import create_app
from ledgerflow.agents.batchloop import BatchLoop, KafkaSource, loop_group, run_loop
from ledgerflow.agents.fence import OutputWrapper
from ledgerflow.agents.output import Outgoing
from ledgerflow.agents.ports import OutputLog
from ledgerflow.config import load_settings


class StopOnFirstWrite(OutputWrapper):
    """An ``OutputLog`` that stops this process (SIGSTOP) before its first non-empty write."""

    def __init__(self, inner: OutputLog) -> None:
        super().__init__(inner)
        self._stopped = False

    async def write(self, records: Sequence[Outgoing]) -> list[int]:
        if records and not self._stopped:
            self._stopped = True
            print(f"zombie: stopping with {len(records)} decisions to write", flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)
            print("zombie: continued", flush=True)
        return await self._inner.write(records)


async def main() -> None:
    settings = load_settings()
    pinned = await layout.pin(settings, loop_group(settings))
    app = create_app(settings, app_id="ledgerflow-zombie-aux")
    source = KafkaSource(settings)
    source.metadata = pinned.encode()
    loop = BatchLoop(source, [])
    ports = policy.Ports.connect(app, settings, prove=loop.prove)
    ports = dataclasses.replace(ports, output=StopOnFirstWrite(ports.output))
    policy.attach(app, loop, settings, policy.PolicyAgent(settings, ports, shared=loop.shared))
    await run_loop(loop, source, app)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main())
