"""``ledgerflow bench``: all the figures with their baselines, in one run.

The sequence:
1. Describe the machine; check the broker and Redis answer; take their pids from
   ``ledgerflow stack status``.
2. Codec micro-benchmark (figure 6), first, while nothing else of ours runs.
3. ``runs`` rounds; in each, every measurement runs next to its baseline, and the order
   of the pair alternates from round to round: saturation passthrough / pipeline
   (figures 1, 4), rebuild in one process / in parallel processes / raw consume of the
   pipeline's topics (2, 10), ``ledgerflow audit`` of those topics (11), the naive agent
   (7), CPU at a fixed rate passthrough / pipeline (3).
4. The latency trial (5): one set of processes, ``runs`` pairs of raw / SSE windows.
5. Full runs only: one more saturation trial each of the pipeline and the naive agent,
   and one more rebuild, under py-spy, for the profile in the summary (not counted in
   the figures).
6. Delete the run's topics and Redis keys; write JSON, charts and the summary under
   ``out_dir``; full runs also refresh ``docs/benchmarks.md``.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ledgerflow.bench import codec, sse_trial, tracing_trial
from ledgerflow.bench.audit_trial import audit_trial
from ledgerflow.bench.machine import describe, load_average
from ledgerflow.bench.procs import stack_pids
from ledgerflow.bench.profile import py_spy
from ledgerflow.bench.trials import Collected, Env, cleanup, fixed_rate, rebuild_pair, saturation
from ledgerflow.config import Settings
from ledgerflow.contracts.codec import require_fast_codec
from ledgerflow.kafka.admin import round_trip


@dataclass(frozen=True, slots=True)
class Plan:
    """Sizes of one run (``--quick`` shrinks everything to a seconds-long smoke)."""

    quick: bool
    runs: int
    events: int  # saturation backlog (figures 1, 2, 4)
    naive_events: int  # the naive agent is slow: a smaller backlog, same measurement
    cpu_events: int  # figure 3
    cpu_rate: float
    subscribers: int  # figure 5
    client_processes: int
    sse_rate: float
    sse_seconds: float
    decision_rate: float  # turns/s of the SSE window with the worker (decision frame latency)
    codec_records: int  # figure 6
    profile: bool
    linger_ms: float  # the worker's fetch linger (``LEDGERFLOW_BATCH_LINGER_MS``; the workers inherit it)

    @classmethod
    def make(cls, *, quick: bool, runs: int, events: int) -> Plan:
        from ledgerflow.agents import batchloop  # as report.py: the bench imports no agent at start-up

        linger = batchloop.linger_from(os.environ) * 1000
        if quick:
            n = events or 300
            return cls(
                True, max(runs, 1), n, max(n // 2, 50), n, 300.0, 20, 1, 50.0, 2.0, 50.0, 300, False, linger
            )
        n = events or 20000
        return cls(
            False,
            max(runs, 1),
            n,
            max(n // 5, 500),
            max(n // 4, 500),
            500.0,
            1000,
            2,
            200.0,
            10.0,
            1000.0,
            20000,
            py_spy() is not None,
            linger,
        )


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def _rounds(env: Env, plan: Plan, got: Collected) -> None:
    for r in range(plan.runs):  # Step 3.
        flip = r % 2 == 1
        pair = ("pipeline", "passthrough") if flip else ("passthrough", "pipeline")
        pipeline_prefix = None
        for kind in pair:
            env.log(f"bench: round {r + 1}/{plan.runs}: saturation, {kind} ({plan.events} events)")
            res = await saturation(env, kind, plan.events)
            got.saturation.setdefault(kind, []).append(res)
            if kind == "pipeline":
                pipeline_prefix = res["prefix"]
        assert pipeline_prefix is not None
        env.log(f"bench: round {r + 1}/{plan.runs}: rebuild vs raw consume")
        source = env.settings.with_overrides(topic_prefix=pipeline_prefix)
        got.rebuild.append(
            await rebuild_pair(
                env, source, ("rebuild", "parallel", "raw") if flip else ("raw", "parallel", "rebuild")
            )
        )
        env.log(f"bench: round {r + 1}/{plan.runs}: ledgerflow audit")
        got.audit.append(await audit_trial(source, env.work_dir))
        env.log(f"bench: round {r + 1}/{plan.runs}: saturation, naive agent ({plan.naive_events} events)")
        got.saturation.setdefault("naive", []).append(await saturation(env, "naive", plan.naive_events))
        for kind in pair:
            env.log(f"bench: round {r + 1}/{plan.runs}: CPU at {plan.cpu_rate:.0f}/s, {kind}")
            got.cpu.setdefault(kind, []).append(await fixed_rate(env, kind, plan.cpu_events, plan.cpu_rate))


async def _measure(env: Env, plan: Plan) -> dict[str, Any]:
    got = Collected()
    profiles: dict[str, Any] = {}
    try:
        await round_trip(env.settings)  # Step 1.
        env.log("bench: codec micro-benchmark")
        codec_result = await asyncio.to_thread(codec.run, plan.codec_records)  # Step 2.
        env.log("bench: tracing overhead (spans off vs on)")
        tracing = await asyncio.to_thread(tracing_trial.run, max(plan.codec_records // 10, 30))
        await _rounds(env, plan, got)
        env.log(f"bench: SSE latency, {plan.subscribers} subscribers")  # Step 4.
        got.sse.append(
            await sse_trial.run(
                env,
                subscribers=plan.subscribers,
                client_procs=plan.client_processes,
                rate=plan.sse_rate,
                seconds=plan.sse_seconds,
                rounds=plan.runs,
                worker_rate=plan.decision_rate,
            )
        )
        if plan.profile:  # Step 5.
            for kind, n in (("pipeline", max(plan.events // 2, 500)), ("naive", plan.naive_events)):
                env.log(f"bench: profiling {kind} with py-spy")
                res = await saturation(env, kind, n, profile=env.work_dir / f"profile-{kind}.txt")
                profiles[kind] = {
                    "rate": res["rate"],
                    "cpu_us_per_event": res.get("cpu_us_per_event"),
                    **res.get("profile", {}),
                }
                if kind == "pipeline":
                    env.log("bench: profiling the rebuild with py-spy")
                    source = env.settings.with_overrides(topic_prefix=res["prefix"])
                    rebuilt = await rebuild_pair(
                        env, source, ("rebuild",), env.work_dir / "profile-rebuild.txt"
                    )
                    profiles["rebuild"] = {
                        "rate": rebuilt["rebuild"]["rate"],
                        **rebuilt["rebuild"].get("profile", {}),
                    }
    finally:
        topics, keys = await cleanup(env)  # Step 6.
        env.log(f"bench: cleaned up {topics} topics and {keys} Redis keys")
    return {"codec": codec_result, "tracing": tracing, "collected": asdict(got), "profiles": profiles}


def bench_cli(
    settings: Settings, *, quick: bool, runs: int, events: int, out_dir: str, scale: bool = False
) -> int:
    """Run the benchmark against the stack in ``settings``; write results to ``out_dir``.
    ``scale``: only the scale-out figures, on private stacks (``bench/scale.py``).

    Returns 0 when every figure was measured (goals met or not), 1 if a trial failed.
    """
    if scale:
        from ledgerflow.bench.scale import scale_cli

        return scale_cli(quick=quick, runs=runs, events=events, out_dir=out_dir)
    from ledgerflow.bench.report import write_outputs

    require_fast_codec()
    plan = Plan.make(quick=quick, runs=runs, events=events)
    base = settings.with_overrides(topic_prefix="")
    work = Path(tempfile.mkdtemp(prefix="ledgerflow-bench-"))
    env = Env(base, uuid.uuid4().hex[:8], work, stack_pids(base), log=_say)
    machine = describe(base)
    began = time.time()
    _say(
        f"bench: {'quick' if quick else 'full'} run {env.run_id}, {plan.runs} round(s); "
        f"broker/Redis pids counted: {env.stack_pids or 'none (external services)'}"
    )
    try:
        measured = asyncio.run(_measure(env, plan))
    except Exception as exc:
        _say(f"bench: a trial failed: {exc}\nlogs kept in {work}")
        return 1
    machine["load_average_at_end"] = load_average()
    document = {
        "run_id": env.run_id,
        "started_at": began,
        "seconds": time.time() - began,
        "plan": asdict(plan),
        "machine": machine,
        "stack_pids": env.stack_pids,
        **measured,
    }
    written = write_outputs(document, Path(out_dir), update_docs=not quick)
    for path in written:
        _say(f"bench: wrote {path}")
    if env.keep:
        _say(f"bench: logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0
