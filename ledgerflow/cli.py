"""``ledgerflow`` command line: the local stack, the worker, the edge, the demo and tools."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ledgerflow import __version__, gcpolicy, logformat
from ledgerflow.commands import envflags
from ledgerflow.commands.failures import exit_code, one_line
from ledgerflow.commands.interrupts import terminate_as_interrupt
from ledgerflow.commands.parsing import (
    DEBUG_HELP,
    OneLineParser,
    add_debug,
    nonnegative_float,
    nonnegative_int,
    positive_float,
    positive_int,
    seconds_up_to_a_day,
    tenant_list,
)
from ledgerflow.commands.quiet import hush_clients
from ledgerflow.config import Settings, host_port, load_settings
from ledgerflow.errors import ValidationError
from ledgerflow.redisclient import async_client

Handler = Callable[[argparse.Namespace, Settings], int]
BENCH_EXTRA = ("avro", "matplotlib")  # the `bench` extra: the reference codec and the charts


def _settings(args: argparse.Namespace) -> Settings:
    try:
        base = load_settings()
    except ValueError as exc:  # a variable that does not parse: a configuration error (exit 2)
        raise ValidationError(str(exc)) from None
    overrides: dict[str, object] = {}
    if getattr(args, "kafka", None):
        overrides.update(kafka_bootstrap=args.kafka, kafka_external=True)
    if getattr(args, "redis", None):
        overrides.update(redis_url=args.redis, redis_external=True)
    if getattr(args, "http", None):
        try:
            overrides["http"] = host_port(args.http, "--http")
        except ValueError as exc:
            raise ValidationError(str(exc)) from None
    if getattr(args, "topic_prefix", None) is not None:
        overrides["topic_prefix"] = args.topic_prefix
    return base.with_overrides(**overrides)


def _common(p: argparse.ArgumentParser, *, http: bool = False, redis: bool = True) -> None:
    """Kafka, Redis and the topic prefix; ``http`` only where the edge's address means something,
    ``redis`` only where the command uses Redis (an option that changes nothing is not offered)."""
    g = p.add_argument_group("connection (defaults from LEDGERFLOW_* variables)")
    g.add_argument(
        "--kafka", metavar="HOST:PORT", help="Kafka bootstrap servers (LEDGERFLOW_KAFKA_BOOTSTRAP)"
    )
    if redis:
        g.add_argument("--redis", metavar="URL", help="Redis URL (LEDGERFLOW_REDIS_URL)")
    if http:
        g.add_argument("--http", metavar="HOST:PORT", help="where the edge listens (LEDGERFLOW_HTTP)")
    g.add_argument("--topic-prefix", help="prefix for every topic name (LEDGERFLOW_TOPIC_PREFIX)")


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.stack import manage

    if args.action == "up":
        from ledgerflow.commands.stack import check_up

        check_up(settings)
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
        from ledgerflow.commands.status import probe

        info = manage.status(settings) | {"answering": probe(settings)}
        print(json.dumps(info, indent=2) if args.json else _describe(info))
    return 0


def _describe(info: dict[str, Any]) -> str:
    from ledgerflow.commands.status import running
    from ledgerflow.stack import rediscluster
    from ledgerflow.stack.cluster import describe_lines

    k, r = info["kafka"], info["redis"]
    seen = info.get("answering", {})
    lines = [
        f"kafka {k['version']}  {k['bootstrap']:<28} {running(k['pid'], k['managed'])}",
        *describe_lines(k),
        f"redis        {r['url']:<28} {running(r['pid'], r['managed'])}",
        *rediscluster.describe_lines(r),
        f"edge         {info['http']:<28} {running(info['processes'].get('edge'), True, seen.get('edge'))}",
        f"worker       {'':<28} {running(info['processes'].get('worker'), True, seen.get('worker_metrics'))}",
        f"state        {info['state_dir']}",
    ]
    return "\n".join(lines)


def cmd_token(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.identity.cli import mint_recorded

    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    print(
        mint_recorded(
            settings,
            offline=args.offline,
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
    from ledgerflow.identity.cli import rotate_recorded

    keys = rotate_recorded(settings, args.purpose, grace_seconds=args.grace)
    _err(f"new {args.purpose} signing key {keys.kid}; the previous key stays valid for {args.grace:.0f} s")
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.agents.runner import run_worker

    logformat.choose(args.log_format)
    import asyncio

    from ledgerflow.agents.runner import check_environment, wanted_agents
    from ledgerflow.commands.announce import announce
    from ledgerflow.commands.quiet import unhush_clients
    from ledgerflow.kafka.admin import ensure_topics

    wanted_agents(args.agents)  # a usage error before any connection attempt
    check_environment(os.environ)  # the same for a bad variable, also before any child is started
    if args.processes != 1:
        return cmd_worker_processes(args, settings)
    _worker_redis_policy(settings)
    asyncio.run(ensure_topics(settings))  # a missing broker is one line, without aiokafka's retries
    unhush_clients()  # from here on the worker's own logging decides what aiokafka may say
    return run_worker(settings, agents=args.agents, announce=announce)


def cmd_worker_processes(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio
    import os

    from ledgerflow.agents.supervisor import check_processes, supervise
    from ledgerflow.kafka.admin import ensure_topics
    from ledgerflow.metrics import worker_metrics_address

    check_processes(args.processes, worker_metrics_address(os.environ))
    _worker_redis_policy(settings)  # once here, before any child is started (each checks again)
    asyncio.run(ensure_topics(settings))
    child_args = ["--agents", args.agents] + (["--log-format", args.log_format] if args.log_format else [])
    return supervise(settings, args.processes, child_args, say=_err)


def _worker_redis_policy(settings: Settings) -> None:
    """An evicting Redis loses read-model keys silently: refused in one line (redispolicy). A Redis
    that does not answer, or hides its policy, is a warning: the worker waits for Redis anyway."""
    from ledgerflow.commands.announce import announce
    from ledgerflow.commands.preflight import require_noeviction

    warning = require_noeviction(settings, reachable=False)
    if warning is not None:
        announce(f"warning: {warning}")


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.commands.serve import serve_cli

    logformat.choose(args.log_format)
    return serve_cli(settings)


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.demo import run_demo

    logformat.choose(args.log_format)
    return run_demo(settings, rate=args.rate, duration=args.duration, tenants=args.tenants)


def cmd_produce(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.commands.progress import bar
    from ledgerflow.delivery import DEFAULT_RETRY_S, RETRY_VARIABLE
    from ledgerflow.envnumbers import DAY_S, env_number
    from ledgerflow.traffic import produce_cli

    retry_s = args.retry_for
    if retry_s is None:
        retry_s = env_number(os.environ, RETRY_VARIABLE, DEFAULT_RETRY_S, 0.0, DAY_S)
    with bar("produce", None) as update:
        return produce_cli(
            settings, count=args.count, rate=args.rate, tenants=args.tenants, on_sent=update, retry_s=retry_s
        )


def cmd_policy(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.commands import policy

    if args.action in {"publish", "sign", "verify", "validate"} and not args.file:
        raise ValidationError(f"policy {args.action} needs FILE, a JSON or YAML rule pack")
    if args.action in {"publish", "sign", "verify"}:
        from ledgerflow.rulepacks_cli import policy_cli

        policy.read_pack_file(args.file, args.tenant)  # a missing or unreadable file: one line, exit 2

        return policy_cli(
            settings, args.action, args.file, tenant=args.tenant, signature=args.signature, key_path=args.key
        )
    if args.action == "validate":
        result = policy.validate(args.file, args.tenant)
        print(
            json.dumps(result)
            if args.json
            else f"{args.file}: valid rule pack for tenant {result['tenant']!r}, {result['rules']} rules, "
            f"constitution {result['constitution_hash']}"
        )
    else:
        return cmd_policy_read(args, settings)
    return 0


def cmd_policy_read(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.commands import policy

    tenant = args.tenant or policy.DEFAULT_TENANT
    found = policy.versions(settings, tenant)
    if args.action == "list":
        items = [{k: v for k, v in item.items() if k != "document"} for item in found]
        print(json.dumps(items) if args.json else policy.format_list(items, tenant))
        return 0
    old = policy.pick(found, getattr(args, "from_version", None), tenant)
    if args.file:
        new_doc, new_name = policy.read_pack_file(args.file, args.tenant).document, args.file
    else:
        newer = policy.pick(found, args.to_version, tenant)
        new_doc, new_name = newer["document"], f"{tenant} v{newer['version']}"
    lines = policy.diff_lines(old["document"], new_doc, f"{tenant} v{old['version']}", new_name)
    print("\n".join(lines) if lines else f"no difference between {tenant} v{old['version']} and {new_name}")
    return 0


def cmd_dlq(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "replay":
        return cmd_dlq_replay(args, settings)
    from ledgerflow.dlq import dlq_cli

    return dlq_cli(settings, args.action, args.topic, args.limit, args.offset, args.json)


def cmd_dlq_replay(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledgerflow.commands.progress import bar
    from ledgerflow.dlq.replay import Filters, format_steps, replay, steps_json

    if not args.topic:
        raise ValidationError("dlq replay needs --topic T, the source topic (e.g. conversation.events)")
    filters = Filters(reason=args.reason, key=args.key, offset=args.offset)
    with bar("replay", None) as update:
        sent = [0]

        def advance() -> None:
            sent[0] += 1
            update(sent[0])

        steps = asyncio.run(
            replay(settings, args.topic, filters, dry_run=args.dry_run, force=args.force, advance=advance)
        )
    print(
        json.dumps(steps_json(steps, dry_run=args.dry_run))
        if args.json
        else format_steps(steps, dry_run=args.dry_run)
    )
    return 0


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledgerflow.commands.tail import TailState, stream_path, tail

    token, renewable = _tail_token(args, settings)
    state = TailState(cursor=args.last_event_id)
    try:
        asyncio.run(
            tail(
                f"http://{settings.http}",
                stream_path(args.conversation),
                token,
                state,
                lambda line: print(line, flush=True),
                _err,
                as_json=args.json,
                count=args.count,
                renewable=renewable,
            )
        )
    finally:
        if state.cursor and not args.json:
            _err(f"tail: resume with --last-event-id {state.cursor}")
    return 0


def _tail_token(args: argparse.Namespace, settings: Settings) -> tuple[Callable[[], str], bool]:
    """The user's token (``--token`` / LEDGERFLOW_TOKEN), or one minted from the local dev key."""
    import os

    given = args.token or os.environ.get("LEDGERFLOW_TOKEN", "")
    if given:
        return (lambda: given), False
    if not args.tenant:
        raise ValidationError("tail needs --tenant T (to mint a dev token) or --token / LEDGERFLOW_TOKEN")
    from ledgerflow.auth.devkeys import ensure_dev_keys
    from ledgerflow.auth.tokens import mint_token

    keys = ensure_dev_keys(settings.state_dir)
    return (
        lambda: mint_token(
            keys,
            sub="ledgerflow-tail",
            tenant=args.tenant,
            roles=["subscriber"],
            ttl_seconds=3600,
            issuer=settings.issuer,
            audience=settings.audience,
        )
    ), True


def cmd_training(args: argparse.Namespace, settings: Settings) -> int:
    import getpass

    from ledgerflow.commands import training

    if args.action == "status":
        found = training.status(settings, args.tenant)
        print(json.dumps(found) if args.json else training.format_status(found))
        return 0
    if not args.reason:
        raise ValidationError(f"training {args.action} needs --reason TEXT (it goes into the audit log)")
    if args.action == "disable" and args.ttl is not None:
        raise ValidationError("--ttl applies to training enable only")
    command = training.Command(
        args.tenant,
        args.action == "enable",
        args.reason,
        args.actor or getpass.getuser(),
        args.ttl,
        args.expected_version,
    )
    answer = training.run_command(settings, command, args.wait)
    print(json.dumps(answer) if args.json else training.format_outcome(answer))
    return 0


def cmd_projections(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledgerflow.commands.progress import Update, bar
    from ledgerflow.projections.abandoned import lease_from_env
    from ledgerflow.projections.generations import rebuild_and_switch
    from ledgerflow.projections.parallel import processes_from_env

    processes_from_env()  # a bad LEDGERFLOW_REBUILD_PROCESSES: one line before the rebuild starts
    lease_from_env()  # the same for LEDGERFLOW_REBUILD_LEASE_S

    async def run(progress: Update) -> int:
        redis = async_client(settings.redis_url, socket_timeout=30)
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
                    # left out, as the projector leaves them out (`ledgerflow dlq list` has why)
                    "undecodable": result.replay.undecodable,
                    "misrouted": result.replay.misrouted,
                    "quarantined": result.replay.quarantined,
                    "deduped": result.replay.deduped,
                    "seconds": round(result.replay.seconds, 3),
                    "old_keys_removed": result.removed_keys,
                    # left by SIGKILLed rebuilds, deleted before this one's replay
                    "abandoned_generations_removed": list(result.abandoned),
                }
            )
        )
        return 0

    with terminate_as_interrupt(), bar("rebuild", None) as update:  # SIGTERM: clean up as Ctrl-C
        return asyncio.run(run(update))


def cmd_audit(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.commands.audit import audit

    with terminate_as_interrupt():  # SIGTERM: the scratch space is deleted as on Ctrl-C
        return audit(settings, json_out=args.json, skip_projections=args.skip_projections, quiet=args.quiet)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    import asyncio

    from ledgerflow.commands.progress import bar
    from ledgerflow.migrate import migrate, summary

    with bar("copying", None) as update:
        done = asyncio.run(migrate(settings, args.to_prefix, args.partitions, update, resume=args.resume))
    print(json.dumps(done.to_json()) if args.json else summary(done, settings.topic_prefix))
    return 0


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    missing = [name for name in BENCH_EXTRA if importlib.util.find_spec(name) is None]
    if missing:
        _err(f"ledgerflow bench needs {', '.join(missing)}: pip install 'ledgerflow[bench]'")
        return 2
    from ledgerflow.bench.run import bench_cli

    return bench_cli(
        settings, quick=args.quick, runs=args.runs, events=args.events, out_dir=args.out, scale=args.scale
    )


def _err(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _policy_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output (validate, list)")
    p.add_argument(
        "--from", dest="from_version", type=positive_int, help="diff: the older version (default: newest)"
    )
    p.add_argument(
        "--to",
        dest="to_version",
        type=positive_int,
        help="diff: the newer version (default: newest; FILE wins)",
    )


def _dlq_replay_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dry-run", action="store_true", help="replay: say what would be replayed, produce nothing"
    )
    p.add_argument("--reason", metavar="CODE", help="replay: only letters with this reason code")
    p.add_argument("--key", help="replay: only letters with this record key")
    p.add_argument(
        "--force",
        action="store_true",
        help="replay: also letters that still do not decode (the letter of an earlier forced replay "
        "only when --offset names it)",
    )


def _tail_parser(sub: Any) -> None:
    t = sub.add_parser("tail", help="follow a conversation, or the tenant's stream, through the edge (SSE)")
    t.add_argument("conversation", nargs="?", help="conversation id (default: the tenant's whole stream)")
    t.add_argument("--tenant", help="mint a subscriber token for this tenant from the local dev key")
    t.add_argument("--token", help="a subscriber token instead (or LEDGERFLOW_TOKEN)")
    t.add_argument("--last-event-id", metavar="CURSOR", help="resume after this cursor (a tail prints it)")
    t.add_argument("--count", type=positive_int, help="stop after this many events")
    t.add_argument("--json", action="store_true", help="one JSON object per frame: id, event, data")
    t.add_argument("--http", metavar="HOST:PORT", help="the edge to follow (LEDGERFLOW_HTTP)")
    t.set_defaults(handler=cmd_tail)


def _training_parser(sub: Any) -> None:
    tr = sub.add_parser("training", help="enable, disable or show a tenant's training mode")
    tr.add_argument("action", choices=["enable", "disable", "status"])
    tr.add_argument("--tenant", required=True, help="the tenant whose training mode to switch or show")
    tr.add_argument("--reason", help="why (enable, disable: required; it goes into the audit log)")
    tr.add_argument("--ttl", type=positive_int, help="enable: seconds until it expires by itself")
    tr.add_argument(
        "--expected-version", type=int, help="refuse unless the tenant's training version is still this"
    )
    tr.add_argument("--actor", help="who asks (default: the login name)")
    tr.add_argument(
        "--wait", type=positive_float, default=10.0, help="seconds to wait for the outcome (default 10)"
    )
    tr.add_argument("--json", action="store_true", help="machine-readable output")
    _kafka_flags(tr)
    tr.add_argument("--redis", metavar="URL", help="Redis URL, for status (LEDGERFLOW_REDIS_URL)")
    tr.set_defaults(handler=cmd_training)


def cmd_chaos(args: argparse.Namespace, settings: Settings) -> int:
    from ledgerflow.chaos.cli import chaos_cli

    return chaos_cli(
        args.duration,
        args.seed,
        args.workers,
        args.rate,
        args.faults,
        args.state_dir,
        args.json,
        redis_cluster=args.redis_cluster,
    )


def _kafka_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--kafka", metavar="HOST:PORT", help="Kafka bootstrap servers (LEDGERFLOW_KAFKA_BOOTSTRAP)"
    )
    p.add_argument("--topic-prefix", help="prefix for every topic name (LEDGERFLOW_TOPIC_PREFIX)")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="ledgerflow",
        description="Event-sourced backbone for governed AI conversations: Kafka in, decisions and "
        "read models out, SSE to subscribers.",
    )
    p.add_argument("--version", action="version", version=f"ledgerflow {__version__}")
    p.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("stack", help="start, stop or inspect the local Kafka + Redis")
    s.add_argument("action", choices=["up", "down", "status"])
    s.add_argument("--json", action="store_true", help="print endpoints and pids as JSON")
    s.add_argument(
        "--brokers",
        type=positive_int,
        help="up: Kafka nodes to run (default: as last started in the state dir, else 1); "
        "3 = a local KRaft cluster, topics at replication factor 3, min.insync.replicas 2",
    )
    s.add_argument(
        "--partitions",
        type=positive_int,
        help="up: partitions of every multi-partition topic it creates (default as in topics.py)",
    )
    s.add_argument(
        "--redis-cluster",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="up: a local Redis Cluster (3 masters, 1 replica each) instead of one Redis; "
        "--no-redis-cluster: one Redis, a stopped cluster's redis-N state removed "
        "(default: as last started in the state dir, else one Redis)",
    )
    _common(s, http=True)
    s.set_defaults(handler=cmd_stack)

    w = sub.add_parser("worker", help="run the stream-processing agents (faust-streaming)")
    w.add_argument("--agents", default="all", help="comma-separated agent names, or 'all'")
    w.add_argument(
        "--processes",
        type=int,
        default=1,
        metavar="N",
        help="N supervised worker processes sharing the partitions (docs/scaling.md); default 1",
    )
    w.add_argument(
        "--log-format", choices=logformat.FORMATS, help="log lines as text or JSON (LEDGERFLOW_LOG_FORMAT)"
    )
    _common(w)
    w.set_defaults(handler=cmd_worker)

    e = sub.add_parser("serve", help="run the HTTP/SSE edge (Starlette on uvicorn)")
    e.add_argument(
        "--log-format", choices=logformat.FORMATS, help="log lines as text or JSON (LEDGERFLOW_LOG_FORMAT)"
    )
    _common(e, http=True)
    e.set_defaults(handler=cmd_serve)

    d = sub.add_parser("demo", help="stack + worker + edge + realistic traffic; Ctrl-C stops all")
    d.add_argument(
        "--rate", type=positive_float, default=5.0, help="conversation events per second (default 5)"
    )
    d.add_argument(
        "--duration", type=nonnegative_float, default=0.0, help="seconds to run; 0 = until Ctrl-C (default)"
    )
    d.add_argument(
        "--tenants",
        type=tenant_list,
        default="acme,globex",
        help="comma-separated tenants (default acme,globex)",
    )
    d.add_argument(
        "--log-format", choices=logformat.FORMATS, help="log lines as text or JSON (LEDGERFLOW_LOG_FORMAT)"
    )
    _common(d, http=True)
    d.set_defaults(handler=cmd_demo)

    pr = sub.add_parser("produce", help="publish generated conversations to Kafka")
    pr.add_argument("--count", type=positive_int, default=10, help="conversations to publish (default 10)")
    pr.add_argument(
        "--rate",
        type=nonnegative_float,
        default=0.0,
        help="conversation events per second; 0 = as fast as possible (default)",
    )
    pr.add_argument(
        "--tenants",
        type=tenant_list,
        default="acme,globex",
        help="comma-separated tenants (default acme,globex)",
    )
    pr.add_argument(
        "--retry-for",
        type=seconds_up_to_a_day,
        metavar="SECONDS",
        help="how long to retry a Kafka that stopped answering before giving up, exit 1; 0 = no retry "
        "(LEDGERFLOW_PRODUCE_RETRY_S, default 60)",
    )
    _common(pr, redis=False)
    pr.set_defaults(handler=cmd_produce)

    t = sub.add_parser("token", help="mint a dev JWT signed with the local dev key")
    t.add_argument("--tenant", required=True, help="the tenant the token is for")
    t.add_argument(
        "--roles",
        default="subscriber",
        help="comma-separated, of producer,subscriber,admin,auditor (default subscriber)",
    )
    t.add_argument("--sub", default="dev-user", help="subject (user id; default dev-user)")
    t.add_argument("--ttl", type=positive_int, default=3600, help="lifetime in seconds (default 3600)")
    t.add_argument(
        "--offline", action="store_true", help="mint without recording it on identity.audit (no Kafka needed)"
    )
    _kafka_flags(t)  # the mint is recorded on identity.audit
    t.set_defaults(handler=cmd_token)

    po = sub.add_parser(
        "policy", help="publish, sign, verify, validate, list and diff rule packs (constitutions)"
    )
    po.add_argument("action", choices=["publish", "sign", "verify", "validate", "list", "diff"])
    po.add_argument("file", nargs="?", help="rule pack JSON or YAML (see docs/policy.md)")
    po.add_argument("--tenant", help="the pack's tenant ('*' = the default pack; list/diff default '*')")
    po.add_argument(
        "--signature", help="detached JWS (or @PATH) from `policy sign` (publish: default the dev policy key)"
    )
    po.add_argument(
        "--key", metavar="PEM", help="sign: an Ed25519/P-256 private key (default: dev policy key)"
    )
    _policy_flags(po)
    _common(po, redis=False)
    po.set_defaults(handler=cmd_policy)

    dq = sub.add_parser("dlq", help="list, show or replay dead letters")
    dq.add_argument("action", choices=["list", "show", "replay"])
    dq.add_argument("--topic", help="source topic, e.g. conversation.events (default: all; replay: required)")
    dq.add_argument("--limit", type=int, help="at most this many (list)")
    dq.add_argument("--offset", type=int, help="offset in the DLQ topic (show; replay: only that letter)")
    dq.add_argument("--json", action="store_true", help="machine-readable output")
    _dlq_replay_flags(dq)
    _kafka_flags(dq)
    dq.set_defaults(handler=cmd_dlq)

    _tail_parser(sub)
    _training_parser(sub)

    pj = sub.add_parser("projections", help="rebuild a projection into a new key space and switch to it")
    pj.add_argument("action", choices=["rebuild"])
    pj.add_argument(
        "name",
        nargs="?",
        default="read-models",
        choices=["read-models"],
        help="the projection (default read-models)",
    )
    _common(pj)
    pj.set_defaults(handler=cmd_projections)

    au = sub.add_parser(
        "audit",
        help="replay the logs: verify hash chains, re-derive every decision, "
        "check training and model-registry transitions, rebuild and diff the read models",
    )
    au.add_argument("--json", metavar="PATH", help="also write the JSON report to PATH ('-' = stdout)")
    au.add_argument(
        "--skip-projections", action="store_true", help="logs only: no read-model rebuild and diff"
    )
    au.add_argument("--quiet", action="store_true", help="no progress line; no summary when clean")
    _common(au)
    au.set_defaults(handler=cmd_audit)

    mg = sub.add_parser(
        "migrate",
        help="copy the input logs into a new topic prefix, e.g. with more partitions "
        "(docs/scaling.md#adding-partitions)",
    )
    mg.add_argument(
        "--to-prefix",
        required=True,
        metavar="PREFIX",
        help="the new generation's topic prefix (its topics are created; they must be empty)",
    )
    mg.add_argument(
        "--partitions",
        type=positive_int,
        metavar="N",
        help="partitions of every multi-partition topic there (default: as declared, 6 and 3)",
    )
    mg.add_argument(
        "--continue",
        dest="resume",
        action="store_true",
        help="copy only what was written since the last finished copy into --to-prefix (after copying "
        "while producers ran: stop them, then --continue)",
    )
    mg.add_argument("--json", action="store_true", help="machine-readable output")
    _kafka_flags(mg)
    mg.set_defaults(handler=cmd_migrate)

    b = sub.add_parser("bench", help="measure against the raw limits of the same stack (docs/benchmarks.md)")
    b.add_argument(
        "--quick", action="store_true", help="seconds-long smoke with tiny sizes (bench/results/quick.*)"
    )
    b.add_argument(
        "--runs", type=positive_int, default=3, help="rounds; every figure is a median over them (default 3)"
    )
    b.add_argument(
        "--events",
        type=nonnegative_int,
        default=0,
        help="saturation backlog per trial (0 = 20000; quick 300)",
    )
    b.add_argument("--out", default="bench/results", help="where results go (default bench/results)")
    b.add_argument(
        "--scale",
        action="store_true",
        help="only the scale-out figures: 1, 2, 4 workers on private 1- and 3-broker stacks",
    )
    _common(b)
    b.set_defaults(handler=cmd_bench)

    ch = sub.add_parser(
        "chaos", help="faults at seeded random points under load on a private cluster; checks nothing is lost"
    )
    ch.add_argument("--duration", default="5m", help="how long the load runs: 90s, 30m, 1h (default 5m)")
    ch.add_argument("--seed", type=int, help="replays a run's fault plan (default: drawn, and printed)")
    # --workers and --rate are checked by the chaos options (ledgerflow/chaos), with their own messages
    ch.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    ch.add_argument("--rate", type=float, default=100.0, help="records per second, all paths (default 100)")
    ch.add_argument(
        "--faults", help="comma-separated fault kinds (default: every kind; see docs/reliability.md)"
    )
    ch.add_argument(
        "--state-dir", help="where the private cluster keeps its state and logs (default: a temp dir)"
    )
    ch.add_argument("--json", metavar="PATH", help="also write the report as JSON to PATH")
    ch.add_argument(
        "--redis-cluster",
        action="store_true",
        help="a Redis Cluster (3 masters, a replica each) instead of one Redis; adds redis-failover",
    )
    ch.set_defaults(handler=cmd_chaos)

    k = sub.add_parser("keys", help="manage dev signing keys")
    k.add_argument("action", choices=["rotate"])
    k.add_argument(
        "--grace",
        type=nonnegative_float,
        default=3600.0,
        help="seconds the old key stays trusted (default 3600)",
    )
    k.add_argument(
        "--purpose",
        choices=["token", "policy"],
        default="token",
        help="token: bearer-token keys (default); policy: rule-pack publisher keys (retired ones stay "
        "verifiable)",
    )
    _kafka_flags(k)  # rotations are recorded on identity.audit
    k.set_defaults(handler=cmd_keys)
    for name, verb in sub.choices.items():
        envflags.add(verb, name)
        add_debug(verb)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    gcpolicy.tune()  # every command is a long-running, allocation-heavy process
    if not args.debug:
        hush_clients()
    envflags.apply(args)
    try:
        return int(args.handler(args, _settings(args)) or 0)
    except (Exception, KeyboardInterrupt) as exc:  # every failure ends as one line (docs/cli.md)
        if args.debug:
            traceback.print_exc()
        if not isinstance(exc, KeyboardInterrupt):
            _err(one_line(exc, debug=args.debug))
        return exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
