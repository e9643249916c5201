"""The worker's share of a decision's latency: a turn's send → its decision appended, no edge.

    python -m ledgerflow.bench.worker_latency [--rate 1000] [--seconds 10]

Figure 9 of ``ledgerflow bench`` times the whole path to an SSE client (load generator →
broker → worker → broker → edge → 1,000 subscribers) on one machine, so the edge and its
subscribers' CPU are in it. This isolates the worker, on the stack in the environment:

1. a fresh topic prefix; the worker under test (``--agents policy,projector``, as figure 9)
   started and warmed up until it decided a few conversations;
2. the load generator publishes user turns at ``--rate`` for ``--seconds``, each with a
   ``t`` header (its send time, µs), round-robin over 200 conversations;
3. once every turn has its decision, both logs are read: for each decision, its record
   timestamp (stamped by the worker's producer when the decision joined its batch, before
   the broker's acknowledgement) minus its turn's ``t``.
Prints one line of percentiles (ms) and a JSON line; the trial's topics and keys are deleted.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path

from ledgerflow.bench.stats import percentile
from ledgerflow.bench.trials import Env, Observer, cleanup, prepare, run_load, start_consumer, warm_up
from ledgerflow.commands.parsing import OneLineParser, positive_float
from ledgerflow.config import Settings, load_settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.payloads import PolicyDecision
from ledgerflow.kafka.logs import read_all
from ledgerflow.topics import CONVERSATION_EVENTS, POLICY_DECISIONS

CONVERSATIONS = 200


async def sample(settings: Settings) -> list[float]:
    """Per decision of a timed turn: ms from the turn's send to the decision's record timestamp."""
    sent: dict[str, float] = {}
    for record in await read_all(settings, settings.topic(CONVERSATION_EVENTS)):
        t = dict(record.headers or ()).get("t")
        if t is not None:
            sent[codec.decode(record.value or b"").event_id] = int(t) / 1000
    out = []
    for record in await read_all(settings, settings.topic(POLICY_DECISIONS)):
        payload = codec.decode(record.value or b"").payload
        if isinstance(payload, PolicyDecision) and payload.input_event_id in sent:
            out.append(record.timestamp_ms - sent[payload.input_event_id])
    return out


async def run(env: Env, rate: float, seconds: float) -> dict[str, float]:
    settings = env.fresh("wlat")
    await prepare(settings)
    child, _ = start_consumer(env, settings, "pipeline")
    try:
        async with Observer(settings, "pipeline", [child]) as observer:
            events, decisions = await warm_up(settings, "pipeline", observer)
            load = await run_load(
                env,
                settings,
                "turns",
                "--rate",
                str(rate),
                "--seconds",
                str(seconds),
                "--conversations",
                str(CONVERSATIONS),
            )
            await observer.wait_for(events + load["sent"], decisions + load["messages"], 300.0)
    finally:
        await asyncio.to_thread(child.stop)
    ms = sorted(await sample(settings))
    if not ms:
        raise RuntimeError(f"no decision of a timed turn was found (worker log: {child.log})")
    return {
        "rate": rate,
        "sent": load["sent"],
        "decisions": len(ms),
        "p50_ms": percentile(ms, 50),
        "p90_ms": percentile(ms, 90),
        "p99_ms": percentile(ms, 99),
        "max_ms": ms[-1],
    }


async def main(settings: Settings, rate: float, seconds: float) -> dict[str, float]:
    env = Env(
        settings=settings,
        run_id=uuid.uuid4().hex[:8],
        work_dir=Path(tempfile.mkdtemp(prefix="ledgerflow-wlat-")),
        stack_pids={},
    )
    try:
        return await run(env, rate, seconds)
    finally:
        await cleanup(env)


if __name__ == "__main__":
    parser = OneLineParser(prog="python -m ledgerflow.bench.worker_latency")
    parser.add_argument("--rate", type=positive_float, default=1000.0, help="turns per second (default 1000)")
    parser.add_argument(
        "--seconds", type=positive_float, default=10.0, help="how long to publish (default 10)"
    )
    args = parser.parse_args()
    got = asyncio.run(main(load_settings(), args.rate, args.seconds))
    print(
        f"worker latency at {got['rate']:.0f} turns/s, {got['decisions']:.0f} decisions: "
        f"p50 {got['p50_ms']:.1f} ms, p90 {got['p90_ms']:.1f} ms, p99 {got['p99_ms']:.1f} ms, "
        f"max {got['max_ms']:.1f} ms"
    )
    print(json.dumps({"result": got}))
