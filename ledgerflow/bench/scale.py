"""``ledgerflow bench --scale``: throughput and CPU per event with 1, 2 and 4 worker processes,
on one broker and on three (replication factor 3, ``min.insync.replicas=2``).

Every cluster is a private stack this command starts on free ports in a scratch state
directory (the same code as ``ledgerflow stack up [--brokers 3]``) and stops at the end, so
the figures never depend on, or disturb, a stack someone else runs. For each cluster, for
each worker count (the order alternates between rounds):

1. fresh topics with ``partitions`` partitions (8: one, two or four workers get equal shares)
   and a fresh read-model key space; a backlog of ``events`` realistic events published;
2. N workers (``ledgerflow worker --agents policy,projector``, the path figure 1 measures,
   each as a supervised child would be: its own faust data directory) started at once;
3. the window opens when the hot path's consumer group is stable with all N members, and
   closes when the read models hold every event and decision (observed from Redis, as the
   saturation trials do). Events drained in the window ÷ its length is the rate; the CPU
   of every worker, broker and Redis process over the window ÷ those events is the CPU per
   event. What the first workers drained while the others were still joining is not counted.

Results: ``<out>/scale.json`` and ``scale.md`` (``--quick``: ``scale-quick.*``); a full run
also rewrites the generated block of docs/scaling.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from ledgerflow.agents.batchloop import loop_group
from ledgerflow.agents.supervisor import CHILD_ENV
from ledgerflow.bench.counted_worker import AGENTS
from ledgerflow.bench.machine import describe, load_average
from ledgerflow.bench.procs import Child, CpuMeter, spawn
from ledgerflow.bench.scalefigures import Trial
from ledgerflow.bench.trials import NO_METRICS, Env, Observer, prepare
from ledgerflow.config import Settings
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.netutil import free_port
from ledgerflow.stack import manage

PARTITIONS = 8
STABLE_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class ScalePlan:
    """Sizes of one run (``--quick``: one broker, one and two workers, a small backlog)."""

    quick: bool
    rounds: int  # every (cluster, workers) cell is measured once per round; the table shows medians
    events: int  # the backlog of each trial
    workers: tuple[int, ...]  # worker process counts, in this order in even rounds, reversed in odd ones
    brokers: tuple[int, ...]  # cluster sizes, each a private stack of its own
    partitions: int = PARTITIONS

    @classmethod
    def make(cls, *, quick: bool, runs: int, events: int) -> ScalePlan:
        if quick:
            return cls(True, 1, events or 3000, (1, 2), (1,))
        return cls(False, max(runs, 1), events or 40000, (1, 2, 4), (1, 3))

    @property
    def command(self) -> str:
        return (
            "ledgerflow bench --scale"
            + (" --quick" if self.quick else f" --runs {self.rounds}")
            + (f" --events {self.events}")
        )


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _free_run(count: int) -> int:
    """A port p with p … p + count - 1 free on 127.0.0.1 (a cluster's nodes and controllers)."""
    for _ in range(100):
        base = free_port()
        with contextlib.ExitStack() as held:
            try:
                for port in range(base, base + count):
                    held.enter_context(socket.create_server(("127.0.0.1", port)))
            except OSError:
                continue
            return base
    raise RuntimeError(f"no {count} consecutive free ports on 127.0.0.1")


@contextlib.contextmanager
def private_cluster(work: Path, brokers: int, say: Callable[[str], None]) -> Iterator[Settings]:
    """A private stack of ``brokers`` brokers and one Redis, stopped (and its state deleted) at the end."""
    state = work / f"stack-{brokers}"
    settings = Settings(
        kafka_bootstrap=f"127.0.0.1:{_free_run(2 * brokers)}",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        state_dir=state,
    )
    try:
        manage.up(settings, say=say, brokers=brokers)
        yield settings.with_overrides(
            kafka_bootstrap=manage.bootstrap(settings, manage.nodes(settings, brokers))
        )
    finally:
        manage.down(settings, say=say)
        shutil.rmtree(state, ignore_errors=True)


def service_pids(settings: Settings, brokers: int) -> dict[str, int]:
    """Every broker's and Redis' pid in this private stack."""
    n = manage.nodes(settings, brokers)
    named = {f"broker-{i + 1}": b.process.pid() for i, b in enumerate(n.brokers)} | {
        "redis": n.redis.process.pid()
    }
    return {name: pid for name, pid in named.items() if pid is not None}


async def group_members(settings: Settings) -> int:
    """Members of the hot path's group once it is Stable (-1 while it rebalances or has no coordinator)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        [response] = await admin.describe_consumer_groups([loop_group(settings)])
        _, _, state, _, _, members, *_ = response.groups[0]
        return len(members) if state == "Stable" else -1
    except KafkaError:  # the group's coordinator is not elected yet: ask again
        return -1
    finally:
        await admin.close()


async def _until_stable(settings: Settings, workers: list[Child]) -> None:
    deadline = time.monotonic() + STABLE_TIMEOUT_S
    while await group_members(settings) != len(workers):
        for w in workers:
            if w.popen.poll() is not None:
                raise RuntimeError(f"{w.name} exited with {w.popen.returncode}:\n{w.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the group never became stable with {len(workers)} members")
        await asyncio.sleep(0.25)


async def drain(env: Env, plan: ScalePlan, brokers: int, workers: int, pids: dict[str, int]) -> Trial:
    """Steps 1 to 3 for one worker count on one cluster."""
    settings = env.fresh(f"b{brokers}w{workers}")
    await ensure_topics(settings, partitions=plan.partitions)
    await prepare(settings)
    loader = spawn(
        settings,
        "load",
        "ledgerflow.bench.load",
        ["burst", "--events", str(plan.events), "--run-id", settings.topic_prefix[:-1]],
        work_dir=env.work_dir,
    )
    load = await asyncio.to_thread(loader.result, 600.0)
    children = [
        spawn(
            settings,
            f"worker-{i}",
            "ledgerflow.bench.counted_worker",
            ["--counters", str(env.work_dir / f"counters-{uuid.uuid4().hex[:8]}.json"), "--agents", AGENTS],
            work_dir=env.work_dir,
            extra_env=NO_METRICS | {CHILD_ENV: str(i)},
        )
        for i in range(workers)
    ]
    try:
        async with Observer(settings, "pipeline", children) as observer:
            await _until_stable(settings, children)
            meter = CpuMeter({c.name: c.pid for c in children} | pids).start()
            began, done = time.monotonic(), await observer.read()
            if done.events >= load["sent"]:
                raise RuntimeError("the backlog was drained before every worker joined: raise --events")
            _, ended, _ = await observer.wait_for(load["sent"], load["messages"], 120 + plan.events / 100)
            used = meter.stop()
    finally:
        for child in children:
            await asyncio.to_thread(child.stop)
    return Trial(
        brokers,
        workers,
        load["sent"] - done.events,
        ended - began,
        sum(v for k, v in used.items() if k.startswith("worker-")),
        sum(v for k, v in used.items() if k.startswith("broker-")),
        used.get("redis", 0.0),
        load_average()[0],
    )


def measure(plan: ScalePlan, work: Path, run_id: str) -> tuple[list[Trial], dict[str, Any]]:
    """Every (cluster, workers) trial of ``plan``; and the machine, described on the first cluster."""
    trials: list[Trial] = []
    machine: dict[str, Any] = {}
    for brokers in plan.brokers:
        _say(f"bench --scale: starting a private stack of {brokers} broker(s)")
        with private_cluster(work, brokers, lambda m: _say(f"  {m}")) as cluster:
            machine = machine or describe(cluster)
            env = Env(cluster, run_id, work, service_pids(cluster, brokers), log=_say)
            for r in range(plan.rounds):
                for workers in plan.workers if r % 2 == 0 else plan.workers[::-1]:
                    _say(f"bench --scale: {brokers} broker(s), {workers} worker(s), round {r + 1}")
                    trial = asyncio.run(drain(env, plan, brokers, workers, env.stack_pids))
                    _say(f"  {trial.rate:,.0f} events/s over {trial.seconds:.1f} s")
                    trials.append(trial)
    return trials, machine


def scale_cli(*, quick: bool, runs: int, events: int, out_dir: str) -> int:
    """``ledgerflow bench --scale``: 0 when every trial was measured, 1 if one failed."""
    from ledgerflow.bench.scalereport import write

    plan = ScalePlan.make(quick=quick, runs=runs, events=events)
    work = Path(tempfile.mkdtemp(prefix="ledgerflow-scale-"))
    began = time.time()
    load = load_average()
    try:
        trials, machine = measure(plan, work, uuid.uuid4().hex[:8])
    except Exception as exc:
        _say(f"bench --scale: a trial failed: {exc}\nlogs kept in {work}")
        return 1
    document = {
        "started_at": began,
        "seconds": time.time() - began,
        "plan": asdict(plan),
        "command": plan.command,
        "machine": machine | {"load_average_at_start": load, "load_average_at_end": load_average()},
        "trials": [asdict(t) for t in trials],
    }
    for path in write(document, Path(out_dir), update_docs=not quick):
        _say(f"bench --scale: wrote {path}")
    shutil.rmtree(work, ignore_errors=True)
    return 0
