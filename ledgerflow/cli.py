"""``ledgerflow`` command line: the local stack, the worker, the edge, the demo and tools."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ledgerflow import logformat
from ledgerflow.config import Settings, load_settings
from ledgerflow.errors import LedgerflowError

Handler = Callable[[argparse.Namespace, Settings], int]
BENCH_EXTRA = ("avro", "matplotlib")  # the `bench` extra: the reference codec and the charts


def _settings(args: argparse.Namespace) -> Settings:
    base = load_settings()
    overrides: dict[str, object] = {}
    if getattr(args, "kafka", None):
        overrides.update(kafka_bootstrap=args.kafka, kafka_external=True)
    if getattr(args, "redis", None):
        overrides.update(redis_url=args.redis, redis_external=True)
    if getattr(args, "http", None):
        overrides["http"] = args.http
    if getattr(args, "topic_prefix", None) is not None:
        overrides["topic_prefix"] = args.topic_prefix
    return base.with_overrides(**overrides)


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection (defaults from LEDGERFLOW_* variables)")
    g.add_argument(
        "--kafka", metavar="HOST:PORT", help="Kafka bootstrap servers (LEDGERFLOW_KAFKA_BOOTSTRAP)"
    )
    g.add_argument("--redis", metavar="URL", help="Redis URL (LEDGERFLOW_REDIS_URL)")
    g.add_argument("--http", metavar="HOST:PORT", help="where the edge listens (LEDGERFLOW_HTTP)")
    g.add_argument("--topic-prefix", help="prefix for every topic name (LEDGERFLOW_TOPIC_PREFIX)")


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.stack import manage

    if args.action == "up":
        info = manage.up(
            settings,
            say=_err,
            brokers=args.brokers,
            partitions=args.partitions,
            redis_cluster=args.redis_cluster,
        )
        print(json.dumps(info, indent=2) if args.json else _describe(info))
    elif args.action == "down":
        stopped = manage.down(settings, say=_err)
        if not stopped:
            _err("nothing of ours was running")
    else:
        info = manage.status(settings)
        print(json.dumps(info, indent=2) if args.json else _describe(info))
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _running(pid: int | None, managed: bool) -> str:
    return f"pid {pid}" if pid else ("external" if not managed else "not running")


def _describe(info: dict[str, Any]) -> str:
    from ledgerflow.stack import rediscluster
    from ledgerflow.stack.cluster import describe_lines

    k, r = info["kafka"], info["redis"]
    running = _running
    lines = [
        f"kafka {k['version']}  {k['bootstrap']:<28} {running(k['pid'], k['managed'])}",
        *describe_lines(k),
        f"redis        {r['url']:<28} {running(r['pid'], r['managed'])}",
        *rediscluster.describe_lines(r),
        f"edge         {info['http']:<28} {running(info['processes'].get('edge'), True)}",
        f"worker       {'':<28} {running(info['processes'].get('worker'), True)}",
        f"state        {info['state_dir']}",
    ]
    return "\n".join(lines)


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.auth.devkeys import ensure_dev_keys
    from ledgerflow.auth.tokens import mint_token

    keys = ensure_dev_keys(settings.state_dir)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    print(
        mint_token(
            keys,
            sub=args.sub,
            tenant=args.tenant,
            roles=roles,
            ttl_seconds=args.ttl,
            issuer=settings.issuer,
            audience=settings.audience,
        )
    )
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.auth.devkeys import rotate

    keys = rotate(settings.state_dir, grace_seconds=args.grace)
    _err(f"new signing key {keys.kid}; the previous key stays trusted for {args.grace:.0f} s")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.agents.runner import run_worker

    logformat.choose(args.log_format)
    return run_worker(settings, agents=args.agents)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.api.server import serve

    logformat.choose(args.log_format)
    return serve(settings)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.demo import run_demo

    logformat.choose(args.log_format)
    return run_demo(settings, rate=args.rate, duration=args.duration, tenants=args.tenants)


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.traffic import produce_cli

    return produce_cli(settings, count=args.count, rate=args.rate, tenants=args.tenants)


def cmd_policy(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledgerflow.policy.validation import parse_rule_pack_text
    from ledgerflow.rulepacks import publish_pack

    with open(args.file, encoding="utf-8") as f:
        text = f.read()
    fmt = "yaml" if args.file.endswith((".yaml", ".yml")) else "json"
    document = parse_rule_pack_text(text, fmt=fmt)
    if args.tenant:
        document["tenant"] = args.tenant
    document.pop("version", None)
    published = asyncio.run(publish_pack(settings, document, producer_name="cli"))
    print(
        json.dumps(
            {
                "tenant": published.tenant,
                "version": published.version,
                "constitution_hash": published.constitution_hash,
                "offset": published.offset,
            }
        )
    )
    return 0


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.dlq import dlq_cli

    return dlq_cli(settings, args.action, args.topic, args.limit, args.offset, args.json)


def cmd_projections(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import time

    import redis.asyncio as aioredis

    from ledgerflow.projections.generations import rebuild_and_switch

    began = time.monotonic()
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or done == total:
            last[0] = now
            rate = done / max(now - began, 1e-9)
            eta = (total - done) / rate if rate else 0.0
            _err(f"rebuild: {done}/{total} records ({rate:,.0f}/s, ETA {eta:.0f} s)")

    async def run() -> int:
        redis = aioredis.Redis.from_url(settings.redis_url, socket_timeout=30)
        try:
            result = await rebuild_and_switch(settings, redis, progress=progress)
        finally:
            await redis.aclose()
        print(
            json.dumps(
                {
                    "projection": args.name,
                    "old_generation": result.old,
                    "new_generation": result.new,
                    "records": result.replay.records,
                    "applied": result.replay.applied,
                    "seconds": round(result.replay.seconds, 3),
                    "old_keys_removed": result.removed_keys,
                }
            )
        )
        return 0

    return asyncio.run(run())


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.audit.cli import audit_cli

    return audit_cli(settings, json_out=args.json, skip_projections=args.skip_projections, quiet=args.quiet)


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    missing = [name for name in BENCH_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        _err(f"ledgerflow bench needs {', '.join(missing)}: pip install 'ledgerflow[bench]'")
        return 2
    from ledgerflow.bench.run import bench_cli

    return bench_cli(settings, quick=args.quick, runs=args.runs, events=args.events, out_dir=args.out)


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ledgerflow",
        description="Event-sourced backbone for governed AI conversations: Kafka in, decisions and "
        "read models out, SSE to subscribers.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("stack", help="start, stop or inspect the local Kafka + Redis")
    s.add_argument("action", choices=["up", "down", "status"])
    s.add_argument("--json", action="store_true", help="print endpoints and pids as JSON")
    s.add_argument(
        "--brokers",
        type=_positive_int,
        help="up: Kafka nodes to run (default: as last started in the state dir, else 1); "
        "3 = a local KRaft cluster, topics at replication factor 3, min.insync.replicas 2",
    )
    s.add_argument(
        "--partitions",
        type=_positive_int,
        help="up: partitions of every multi-partition topic it creates (default as in topics.py)",
    )
    s.add_argument(
        "--redis-cluster",
        action="store_true",
        default=None,
        help="up: a local Redis Cluster (3 masters, 1 replica each) instead of one Redis",
    )
    _common(s)
    s.set_defaults(handler=cmd_stack)

    w = sub.add_parser("worker", help="run the stream-processing agents (faust-streaming)")
    w.add_argument("--agents", default="all", help="comma-separated agent names, or 'all'")
    w.add_argument(
        "--log-format", choices=logformat.FORMATS, help="log lines as text or JSON (LEDGERFLOW_LOG_FORMAT)"
    )
    _common(w)
    w.set_defaults(handler=cmd_worker)

    e = sub.add_parser("serve", help="run the HTTP/SSE edge (Starlette on uvicorn)")
    e.add_argument(
        "--log-format", choices=logformat.FORMATS, help="log lines as text or JSON (LEDGERFLOW_LOG_FORMAT)"
    )
    _common(e)
    e.set_defaults(handler=cmd_serve)

    d = sub.add_parser("demo", help="stack + worker + edge + realistic traffic; Ctrl-C stops all")
    d.add_argument("--rate", type=float, default=5.0, help="turns per second (default 5)")
    d.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 = until Ctrl-C")
    d.add_argument("--tenants", default="acme,globex", help="comma-separated tenants")
    d.add_argument(
        "--log-format", choices=logformat.FORMATS, help="log lines as text or JSON (LEDGERFLOW_LOG_FORMAT)"
    )
    _common(d)
    d.set_defaults(handler=cmd_demo)

    pr = sub.add_parser("produce", help="publish generated conversations to Kafka")
    pr.add_argument("--count", type=int, default=10, help="conversations to publish")
    pr.add_argument("--rate", type=float, default=0.0, help="turns per second; 0 = as fast as possible")
    pr.add_argument("--tenants", default="acme,globex")
    _common(pr)
    pr.set_defaults(handler=cmd_produce)

    t = sub.add_parser("token", help="mint a dev JWT signed with the local dev key")
    t.add_argument("--tenant", required=True)
    t.add_argument("--roles", default="subscriber", help="comma-separated: producer,subscriber,admin,auditor")
    t.add_argument("--sub", default="dev-user", help="subject (user id)")
    t.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    t.set_defaults(handler=cmd_token)

    po = sub.add_parser("policy", help="publish rule packs (constitutions)")
    po.add_argument("action", choices=["publish"])
    po.add_argument("file", help="rule pack JSON or YAML (see docs/policy.md)")
    po.add_argument("--tenant", help="override the pack's tenant ('*' = the default pack)")
    _common(po)
    po.set_defaults(handler=cmd_policy)

    dq = sub.add_parser("dlq", help="list or show dead letters with their reasons")
    dq.add_argument("action", choices=["list", "show"])
    dq.add_argument("--topic", help="source topic, e.g. conversation.events (default: all)")
    dq.add_argument("--limit", type=int, help="at most this many (list)")
    dq.add_argument("--offset", type=int, help="offset in the DLQ topic (show)")
    dq.add_argument("--json", action="store_true", help="machine-readable output")
    _common(dq)
    dq.set_defaults(handler=cmd_dlq)

    pj = sub.add_parser("projections", help="rebuild a projection into a new key space and switch to it")
    pj.add_argument("action", choices=["rebuild"])
    pj.add_argument("name", nargs="?", default="read-models", choices=["read-models"])
    _common(pj)
    pj.set_defaults(handler=cmd_projections)

    au = sub.add_parser(
        "audit",
        help="replay the logs: verify hash chains, re-derive every decision, "
        "check training transitions, rebuild and diff the read models",
    )
    au.add_argument("--json", metavar="PATH", help="also write the JSON report to PATH ('-' = stdout)")
    au.add_argument(
        "--skip-projections", action="store_true", help="logs only: no read-model rebuild and diff"
    )
    au.add_argument("--quiet", action="store_true", help="no progress line; no summary when clean")
    _common(au)
    au.set_defaults(handler=cmd_audit)

    b = sub.add_parser("bench", help="measure against the raw limits of the same stack (docs/benchmarks.md)")
    b.add_argument(
        "--quick", action="store_true", help="seconds-long smoke with tiny sizes (bench/results/quick.*)"
    )
    b.add_argument(
        "--runs", type=int, default=3, help="rounds; every figure is a median over them (default 3)"
    )
    b.add_argument(
        "--events", type=int, default=0, help="saturation backlog per trial (0 = 20000; quick 300)"
    )
    b.add_argument("--out", default="bench/results", help="where results go (default bench/results)")
    _common(b)
    b.set_defaults(handler=cmd_bench)

    k = sub.add_parser("keys", help="manage dev signing keys")
    k.add_argument("action", choices=["rotate"])
    k.add_argument("--grace", type=float, default=3600.0, help="seconds the old key stays trusted")
    k.set_defaults(handler=cmd_keys)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args, _settings(args)) or 0)
    except LedgerflowError as exc:
        _err(f"ledgerflow: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
