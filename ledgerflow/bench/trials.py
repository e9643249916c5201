"""One measurement each: saturation throughput, CPU at a fixed rate, rebuild vs raw read.

Every trial gets its own topic prefix (fresh topics, fresh read-model key space), so
trials and runs never mix. A trial under test is one of three consumers:

- ``passthrough`` — ``ledgerflow.bench.passthrough`` (the raw limit);
- ``pipeline`` — our worker (policy + projector), and
- ``naive`` — ``ledgerflow.bench.naive_agent``, both run by ``ledgerflow.bench.counted_worker``
  (which counts their Redis round trips).

Progress of the pipeline and the naive agent is observed from outside every 20 ms: the
tenants' read-model counters in Redis (turns, conversations started/closed, decisions by
outcome), i.e. events whose projections are applied, and decisions projected. The
passthrough drains a backlog in well under a second, too fast for polling: its rate
comes from its own (time, records) points after each batch's acks, while completion is
still observed from outside (the sum of the sink topic's end offsets). Both rates have
the same definition: records done after the first completed batch ÷ the time from the
first completed batch to the last.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from ledgerflow.bench.counted_worker import read_counts
from ledgerflow.bench.load import TENANTS
from ledgerflow.bench.procs import Child, CpuMeter, spawn
from ledgerflow.bench.profile import Sampler, summarise
from ledgerflow.config import Settings
from ledgerflow.kafka.admin import ensure_topics, partition_counts
from ledgerflow.projections.guards import set_guard
from ledgerflow.projections.keys import Keys
from ledgerflow.redisclient import async_client
from ledgerflow.topics import CONVERSATION_EVENTS, TopicSpec, all_topics
from ledgerflow.traffic import interleaved, publish

SINK = "bench.passthrough"
NO_METRICS = {"LEDGERFLOW_WORKER_METRICS": "off"}  # no port clash with a worker someone else runs
POLL_S = 0.02
START_TIMEOUT_S = 120.0
EVENT_FIELDS = (b"conversations_started", b"turns", b"conversations_closed")
DECISION_FIELDS = tuple(f"decisions_{o}".encode() for o in ("allow", "review", "redact", "deny"))


@dataclass
class Env:
    """What every trial of one ``ledgerflow bench`` run shares."""

    settings: Settings
    run_id: str
    work_dir: Path
    stack_pids: dict[str, int]
    log: Any = print
    prefixes: list[str] = field(default_factory=list)
    keep: bool = False  # keep work_dir (logs, samples) after the run: something looked wrong

    def fresh(self, label: str) -> Settings:
        prefix = f"bench-{self.run_id}-{len(self.prefixes) + 1}{label}."
        self.prefixes.append(prefix)
        return self.settings.with_overrides(topic_prefix=prefix)


async def cleanup(env: Env) -> tuple[int, int]:
    """Delete the run's topics and Redis keys (its prefixes only); return (topics, keys) deleted."""
    if not env.prefixes:
        return 0, 0
    admin = AIOKafkaAdminClient(bootstrap_servers=env.settings.kafka_bootstrap, request_timeout_ms=30000)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(tuple(env.prefixes))]
        for i in range(0, len(doomed), 50):
            await admin.delete_topics(doomed[i : i + 50])
    finally:
        await admin.close()
    redis = async_client(env.settings.redis_url, socket_timeout=30)
    keys = 0
    try:
        for prefix in env.prefixes:
            batch = [k async for k in redis.scan_iter(match=f"lf:{prefix}*", count=1000)]
            for i in range(0, len(batch), 1000):
                keys += await redis.delete(*batch[i : i + 1000])
    finally:
        await redis.aclose()
    return len(doomed), keys


@dataclass
class Progress:
    events: int = 0
    decisions: int = 0


async def prepare(settings: Settings) -> None:
    """Topics of the prefix (and the passthrough's sink); mark the key space complete.

    The sentinel tells the projector its (empty) space is complete, so it processes
    records live instead of first replaying the backlog as a rebuild.
    """
    await ensure_topics(settings, (*all_topics(), TopicSpec(SINK, 6, {"retention.ms": "3600000"})))
    redis = async_client(settings.redis_url, socket_timeout=10)
    try:
        await set_guard(redis, Keys.for_prefix(settings.topic_prefix).sentinel(), "bench")
    finally:
        await redis.aclose()


class Observer:
    """Reads how far a consumer under test has got (see the module doc)."""

    def __init__(self, settings: Settings, kind: str, watched: Sequence[Child] = ()) -> None:
        self._settings, self._kind = settings, kind
        self._watched = tuple(watched)  # processes under test: one that exits ends the wait at once
        self._keys = Keys.for_prefix(settings.topic_prefix)
        self._redis: aioredis.Redis | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._tps: list[TopicPartition] = []

    async def __aenter__(self) -> Self:
        if self._kind == "passthrough":
            sink = self._settings.topic(SINK)
            count = (await partition_counts(self._settings, [sink]))[sink]
            self._tps = [TopicPartition(sink, p) for p in range(count)]
            self._consumer = AIOKafkaConsumer(
                bootstrap_servers=self._settings.kafka_bootstrap, enable_auto_commit=False
            )
            await self._consumer.start()
        else:
            self._redis = async_client(self._settings.redis_url, socket_timeout=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
        if self._redis is not None:
            await self._redis.aclose()

    async def read(self) -> Progress:
        if self._consumer is not None:
            ends = await self._consumer.end_offsets(self._tps)
            return Progress(sum(ends.values()), 0)
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        for tenant in TENANTS:
            pipe.hgetall(self._keys.tenant(tenant))
        got = Progress()
        for counters in await pipe.execute():
            got.events += sum(int(counters.get(f, 0)) for f in EVENT_FIELDS)
            got.decisions += sum(int(counters.get(f, 0)) for f in DECISION_FIELDS)
        return got

    def _check_alive(self) -> None:
        """Fail at once, with the log's tail, when a process under test has exited (it would
        otherwise be waited for until the timeout, minutes later, with no word of why)."""
        for child in self._watched:
            code = child.popen.poll()
            if code is not None:
                raise RuntimeError(
                    f"{child.name} exited with {code} while {self._kind} was measured "
                    f"(log: {child.log}):\n{child.log_tail()}"
                )

    async def wait_for(
        self, events: int, decisions: int, timeout: float, on_first: Callable[[], None] | None = None
    ) -> tuple[float, float, int]:
        """Poll until ``events`` and ``decisions`` are done; (t_first_progress, t_done, events at t_first).

        ``on_first`` is called when the first progress is seen.
        """
        deadline = time.monotonic() + timeout
        first: tuple[float, int] | None = None
        last_zero = time.monotonic()
        while True:
            now = time.monotonic()
            got = await self.read()
            if first is None and got.events > 0:
                first = (now, got.events)
                if on_first is not None:
                    on_first()
            elif first is None:
                last_zero = now
            if got.events >= events and got.decisions >= decisions:
                assert first is not None
                if first[1] >= events:  # all of it in one poll (tiny smoke runs)
                    return last_zero, now, 0
                return first[0], now, first[1]
            self._check_alive()
            if now > deadline:
                raise TimeoutError(
                    f"{self._kind}: {got.events}/{events} events and {got.decisions}/"
                    f"{decisions} decisions done after {timeout:.0f} s"
                )
            await asyncio.sleep(POLL_S)


def start_consumer(env: Env, settings: Settings, kind: str) -> tuple[Child, Path | None]:
    """The process under test; for the pipeline also the file its Redis counters go to."""
    if kind == "passthrough":
        args = [
            "--source",
            settings.topic(CONVERSATION_EVENTS),
            "--sink",
            settings.topic(SINK),
            "--group",
            settings.topic("bench-passthrough"),
        ]
        return spawn(settings, kind, "ledgerflow.bench.passthrough", args, work_dir=env.work_dir), None
    counters = env.work_dir / f"counters-{uuid.uuid4().hex[:8]}.json"
    target = "naive" if kind == "naive" else "worker"
    child = spawn(
        settings,
        kind,
        "ledgerflow.bench.counted_worker",
        ["--counters", str(counters), "--target", target],
        work_dir=env.work_dir,
        extra_env=NO_METRICS,
    )
    return child, counters


def _expected(kind: str, load: dict[str, Any]) -> tuple[int, int]:
    return load["sent"], (0 if kind == "passthrough" else load["messages"])


async def run_load(env: Env, settings: Settings, *args: str) -> dict[str, Any]:
    child = spawn(
        settings,
        "load",
        "ledgerflow.bench.load",
        [*args, "--run-id", settings.topic_prefix[:-1]],
        work_dir=env.work_dir,
    )
    return await asyncio.to_thread(child.result, 600.0)


async def saturation(env: Env, kind: str, events: int, profile: Path | None = None) -> dict[str, Any]:
    """Events/s of ``kind`` draining a backlog of ``events`` records (figures 1, 4, 7).

    With ``profile``, the consumer is sampled by py-spy while it drains (collapsed
    stacks written there).
    """
    settings = env.fresh(kind)
    await prepare(settings)
    load = await run_load(env, settings, "burst", "--events", str(events))
    want_events, want_decisions = _expected(kind, load)
    child, counters = start_consumer(env, settings, kind)
    samplers: list[Sampler] = []
    meter = CpuMeter({kind: child.pid})

    def first_progress() -> None:  # profile and meter the drain, not the start-up
        meter.start()
        if profile is not None:
            samplers.append(Sampler(child.pid, profile))

    try:
        async with Observer(settings, kind, [child]) as observer:
            t0, t1, done0 = await observer.wait_for(
                want_events, want_decisions, START_TIMEOUT_S + want_events / 100, first_progress
            )
        cpu_s = meter.stop().get(kind)
    finally:
        sampled = samplers[0].stop() if samplers else None
        await asyncio.sleep(0.4 if counters else 0)  # let the counters file catch up
        counts = read_counts(counters) if counters else None
        await asyncio.to_thread(child.stop)
    if kind == "passthrough":  # its own clock: a backlog it drains in well under a second
        t0, t1, done0 = _from_points(child.wait_line("result", 10.0)["result"], want_events)
    seconds = max(t1 - t0, 1e-3)
    result: dict[str, Any] = {
        "kind": kind,
        "prefix": settings.topic_prefix,
        "events": want_events,
        "decisions": want_decisions,
        "seconds": seconds,
        "rate": (want_events - done0) / seconds,
    }
    if cpu_s is not None and kind != "passthrough":  # its drain is too short to meter from outside
        result["cpu_us_per_event"] = cpu_s / max(want_events - done0, 1) * 1e6
    if sampled is not None:
        result["profile"] = summarise(sampled)
    if counts is not None:
        result["redis"] = counts | {
            "round_trips_per_event": counts["round_trips"] / want_events,
            "commands_per_event": counts["commands"] / want_events,
        }
    return result


def _from_points(report: dict[str, Any], events: int) -> tuple[float, float, int]:
    """(first batch done, the batch that completed ``events``, records at the first batch);
    from the first fetch when one batch held everything (tiny smoke runs)."""
    points = report["points"]
    first_t, first_n = points[0]
    done_t = next(t for t, n in points if n >= events)
    if first_n >= events:
        return report["first_fetch"], done_t, 0
    return first_t, done_t, int(first_n)


async def warm_up(settings: Settings, kind: str, observer: Observer) -> tuple[int, int]:
    """Publish a few conversations and wait until the consumer has handled them (it is ready)."""
    batch = list(interleaved(random.Random(1), TENANTS, 3, time.time_ns() // 1000, run_id="warm"))
    await publish(settings, iter(batch), progress_every_s=0)
    events = len(batch)
    decisions = 0 if kind == "passthrough" else sum(e.type == "MessageSubmitted" for e in batch)
    await observer.wait_for(events, decisions, START_TIMEOUT_S)
    return events, decisions


async def fixed_rate(env: Env, kind: str, events: int, rate: float) -> dict[str, Any]:
    """CPU-seconds per million events of ``kind`` at ``rate`` events/s, every process counted (figure 3)."""
    settings = env.fresh(kind + "cpu")
    await prepare(settings)
    child, _ = start_consumer(env, settings, kind)
    try:
        async with Observer(settings, kind, [child]) as observer:
            warm_events, warm_decisions = await warm_up(settings, kind, observer)
            meter = CpuMeter({kind: child.pid, **env.stack_pids}).start()
            began = time.monotonic()
            load = await run_load(env, settings, "rate", "--events", str(events), "--rate", str(rate))
            want_events, want_decisions = _expected(kind, load)
            await observer.wait_for(
                warm_events + want_events, warm_decisions + want_decisions, 60 + want_events / 50
            )
            used = meter.stop()
            seconds = time.monotonic() - began
    finally:
        await asyncio.to_thread(child.stop)
    used["load generator"] = load["cpu_s"]
    total = sum(used.values())
    return {
        "kind": kind,
        "events": want_events,
        "rate": rate,
        "seconds": seconds,
        "achieved_rate": want_events / load["seconds"] if load["seconds"] else 0.0,
        "cpu_s": used,
        "cpu_total_s": total,
        "cpu_s_per_million": total / want_events * 1e6,
    }


async def rebuild_pair(
    env: Env, settings: Settings, order: tuple[str, ...], profile: Path | None = None
) -> dict[str, Any]:
    """Projection rebuild and raw consume of the topics a pipeline trial filled (figure 2);
    with ``profile``, the rebuild is sampled by py-spy from the moment its clock starts."""
    out: dict[str, Any] = {}
    for mode in order:
        ns = f"lf:{settings.topic_prefix}rebuild-{uuid.uuid4().hex[:6]}:"
        child = spawn(
            settings,
            f"replay-{mode}",
            "ledgerflow.bench.replay",
            [mode, "--namespace", ns],
            work_dir=env.work_dir,
        )
        sampler = None
        if profile is not None and mode == "rebuild":
            await asyncio.to_thread(child.wait_line, "started", 60.0)
            sampler = Sampler(child.pid, profile)
        out[mode] = await asyncio.to_thread(child.result, 600.0)
        if sampler is not None and (sampled := sampler.stop()) is not None:
            out[mode]["profile"] = summarise(sampled)
    return out


@dataclass
class Collected:
    """Every trial's raw result, by figure."""

    saturation: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    cpu: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    rebuild: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    sse: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
