"""Figure 5: SSE end-to-end latency with many subscribers, against raw Kafka in the same run.

The sequence:
1. A fresh prefix; its topics plus a raw topic with the same partition count.
2. Start the edge (``ledgerflow serve``, a real process), then the subscriber processes
   (each opens its share of the conversation streams) and the raw Kafka consumer
   process; wait until every one reports ready. A second of turns warms the edge up.
3. Judged windows, alternating which goes first each round: the load generator
   publishes user turns at a fixed rate for a fixed time, round-robin over the
   subscribed conversations, to ``conversation.events`` (SSE window) or to the raw topic
   (raw window). No worker runs: an event frame's path is producer → broker → edge hub
   → HTTP → client, and on a 2-core machine a busy worker would only add CPU contention
   the raw window does not have. Every process's CPU is metered per window.
4. Then the worker (``ledgerflow worker --agents policy,projector``) starts, warms up
   (until the warm-up turns' decisions are projected), and one more SSE window measures
   event frames with the worker busy and decision frames (produce → policy agent →
   decision → edge → client). Reported, not judged.
5. Stop the probes (they write their samples), the edge and the worker; assign samples
   to windows by their send time and take percentiles.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson

from ledgerflow.auth.devkeys import ensure_dev_keys
from ledgerflow.auth.tokens import mint_token
from ledgerflow.bench.counted_worker import AGENTS
from ledgerflow.bench.load import LATENCY_TENANT
from ledgerflow.bench.procs import Child, CpuMeter, spawn
from ledgerflow.bench.stats import percentile
from ledgerflow.bench.trials import NO_METRICS, Env, Observer, prepare
from ledgerflow.config import Settings
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.netutil import free_port, wait_http_ready
from ledgerflow.topics import CONVERSATION_EVENTS, TopicSpec

RAW = "bench.raw"
PARTITIONS = 6  # as conversation.events
READY_TIMEOUT_S = 180.0


def _ready(port: int) -> int:
    """The edge's /readyz status (0 when it does not answer)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


async def _window(
    env: Env,
    settings: Settings,
    topic: str,
    rate: float,
    seconds: float,
    run_id: str,
    conversations: int,
    meter_pids: dict[str, int],
) -> dict[str, Any]:
    meter = CpuMeter(meter_pids).start()
    began = time.time_ns() // 1000
    load = spawn(
        settings,
        "load",
        "ledgerflow.bench.load",
        [
            "turns",
            "--topic",
            topic,
            "--rate",
            str(rate),
            "--seconds",
            str(seconds),
            "--conversations",
            str(conversations),
            "--run-id",
            run_id,
        ],
        work_dir=env.work_dir,
    )
    result = await asyncio.to_thread(load.result, seconds + 120)
    await asyncio.sleep(1.0)  # stragglers
    used = meter.stop()
    used["load generator"] = result["cpu_s"]
    return {
        "from_us": began,
        "to_us": time.time_ns() // 1000,
        "sent": result["sent"],
        "achieved_rate": result["sent"] / result["seconds"] if result["seconds"] else 0.0,
        "cpu_s": used,
    }


KINDS = {"raw": {"raw"}, "sse": {"MessageSubmitted"}, "sse+worker": {"MessageSubmitted", "PolicyDecision"}}


def summarise(samples: list[tuple[str, int, int]], window: dict[str, Any]) -> dict[str, Any]:
    """Percentiles (ms) of each kind of sample the window measures, sent inside it (decisions
    of earlier windows' events, decided once the worker starts, are not counted)."""
    kinds: dict[str, list[float]] = {}
    wanted = KINDS[window["kind"]]
    for kind, sent, latency in samples:
        if kind in wanted and window["from_us"] <= sent <= window["to_us"]:
            kinds.setdefault(kind, []).append(latency / 1000)
    return {
        kind: {"count": len(v), "p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99), "max_ms": max(v)}
        for kind, v in kinds.items()
    }


async def run(
    env: Env,
    *,
    subscribers: int,
    client_procs: int,
    rate: float,
    seconds: float,
    rounds: int,
    worker_rate: float | None = None,
) -> dict[str, Any]:
    """``worker_rate``: turns/s of the window with the worker (default ``rate``)."""
    settings = env.fresh("sse")
    await prepare(settings)  # Step 1.
    await ensure_topics(settings, (TopicSpec(RAW, PARTITIONS, {"retention.ms": "3600000"}),))
    run_id = settings.topic_prefix.rstrip(".")
    port = free_port()
    edge_settings = settings.with_overrides(http=f"127.0.0.1:{port}")
    edge = spawn(edge_settings, "edge", "ledgerflow.cli", ["serve"], work_dir=env.work_dir)  # Step 2.
    worker: Child | None = None
    probes: list[Child] = []
    try:
        await asyncio.to_thread(wait_http_ready, edge, f"http://127.0.0.1:{port}", READY_TIMEOUT_S)
        token = mint_token(
            ensure_dev_keys(settings.state_dir),
            sub="bench",
            tenant=LATENCY_TENANT,
            roles="subscriber",
            ttl_seconds=7200,
            issuer=settings.issuer,
            audience=settings.audience,
        )
        share = -(-subscribers // client_procs)
        for i, first in enumerate(range(0, subscribers, share)):
            count = min(share, subscribers - first)
            probes.append(
                spawn(
                    settings,
                    f"sse-clients-{i}",
                    "ledgerflow.bench.sse_clients",
                    [
                        "sse",
                        "--port",
                        str(port),
                        "--token",
                        token,
                        "--run-id",
                        run_id,
                        "--first",
                        str(first),
                        "--count",
                        str(count),
                        "--out",
                        str(env.work_dir / f"sse-{run_id}-{i}.json"),
                    ],
                    work_dir=env.work_dir,
                )
            )
        probes.append(
            spawn(
                settings,
                "kafka-probe",
                "ledgerflow.bench.sse_clients",
                [
                    "kafka",
                    "--topic",
                    settings.topic(RAW),
                    "--partitions",
                    str(PARTITIONS),
                    "--out",
                    str(env.work_dir / f"raw-{run_id}.json"),
                ],
                work_dir=env.work_dir,
            )
        )
        ready = [await asyncio.to_thread(p.wait_line, "ready", READY_TIMEOUT_S) for p in probes]
        opened = sum(r["ready"] for r in ready[:-1])
        events_topic = settings.topic(CONVERSATION_EVENTS)
        published = (await _window(env, settings, events_topic, rate, 1.0, run_id, subscribers, {}))["sent"]
        pids = {"edge": edge.pid, **env.stack_pids, **{p.name: p.pid for p in probes}}
        windows = []
        for r in range(rounds):  # Step 3.
            order = ("raw", "sse") if r % 2 == 0 else ("sse", "raw")
            for kind in order:
                topic = settings.topic(RAW) if kind == "raw" else events_topic
                w = await _window(env, settings, topic, rate, seconds, run_id, subscribers, pids)
                windows.append(w | {"kind": kind, "round": r, "edge_ready_after": _ready(port)})
                published += w["sent"] if kind == "sse" else 0
                env.log(f"bench: latency window {r + 1}/{rounds} {kind}: {w['sent']} sent")
        worker = spawn(
            settings,
            "worker",
            "ledgerflow.cli",
            ["worker", "--agents", AGENTS],  # Step 4.
            work_dir=env.work_dir,
            extra_env=NO_METRICS,
        )
        async with Observer(settings, "pipeline") as observer:  # it starts from the earliest offset
            published += (await _window(env, settings, events_topic, rate, 1.0, run_id, subscribers, {}))[
                "sent"
            ]
            await observer.wait_for(published, published, READY_TIMEOUT_S)
        w = await _window(
            env,
            settings,
            events_topic,
            worker_rate or rate,
            seconds,
            run_id,
            subscribers,
            pids | {"worker": worker.pid},
        )
        windows.append(w | {"kind": "sse+worker", "round": rounds, "edge_ready_after": _ready(port)})
        env.log(f"bench: latency window with the worker: {w['sent']} sent")
    finally:
        results = []
        for p in probes:  # Step 5.
            p.stop()
            try:
                results.append(p.wait_line("result", 10.0)["result"])
            except RuntimeError:
                results.append({"out": None, "error_count": -1})
        edge.stop()
        if worker is not None:
            worker.stop()
    samples: list[tuple[str, int, int]] = []
    for res in results:
        if res.get("out") and Path(res["out"]).exists():
            samples += [tuple(s) for s in orjson.loads(Path(res["out"]).read_bytes())]
    for w in windows:
        w["latency"] = summarise(samples, w)
    short = [
        w
        for w in windows
        if w["kind"].startswith("sse")
        and w["latency"].get("MessageSubmitted", {}).get("count", 0) < 0.95 * w["sent"]
    ]
    if short:  # keep the evidence: which windows lost frames, and what the edge said
        env.keep = True
        env.log(
            f"bench: SSE windows lost frames (rounds {[w['round'] for w in short]}); edge log: {edge.log}"
        )
    return {
        "subscribers": subscribers,
        "opened": opened,
        "client_processes": client_procs,
        "rate": rate,
        "worker_rate": worker_rate or rate,
        "seconds": seconds,
        "windows": windows,
        "probe_errors": sum(max(r.get("error_count", 0), 0) for r in results),
        "probe_errors_sample": [e for r in results for e in r.get("errors", [])][:5],
        "control_frames": _merge(r.get("control", {}) for r in results),
        "edge_log_tail": edge.log_tail(20) if short else "",
    }


def _merge(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + v
    return out
