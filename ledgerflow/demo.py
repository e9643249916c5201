"""``ledgerflow demo``: the whole system on this machine, with live traffic.

1. Bring the local stack up (or use the services the environment points at).
2. Start the worker and the edge as child processes (pid files under the state dir).
3. Wait until the edge is ready, mint a subscriber token, print URLs and a `curl -N`.
4. Publish realistic multi-tenant conversations until Ctrl-C (or ``--duration``).
5. Stop what this run started: traffic, edge, worker, and the stack if it was not
   running before.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import orjson

from ledgerflow.auth.devkeys import ensure_dev_keys
from ledgerflow.auth.tokens import mint_token
from ledgerflow.config import Settings
from ledgerflow.config import child_env as child_env  # its old home: the bench and the tests import it here
from ledgerflow.contracts.events import Event
from ledgerflow.errors import StackError
from ledgerflow.metrics import worker_metrics_address
from ledgerflow.rulepacks import latest_version, publish_pack
from ledgerflow.sse_client import follow
from ledgerflow.stack import manage
from ledgerflow.stack.processes import Managed, spawn, stop, tail
from ledgerflow.traffic import interleaved, publish

READY_TIMEOUT_S = 60.0


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def start_service(settings: Settings, proc: Managed, *args: str) -> int:
    """Start ``ledgerflow <args>`` in the background with this run's settings."""
    existing = proc.pid()
    if existing is not None:
        return existing
    log = settings.state_dir / "logs" / f"{proc.name}.log"
    return spawn(proc, [sys.executable, "-m", "ledgerflow.cli", *args], log, env=child_env(settings))


def wait_ready(settings: Settings, edge: Managed, timeout: float = READY_TIMEOUT_S) -> None:
    url = f"http://{settings.http}/readyz"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if edge.pid() is None:
            log = settings.state_dir / "logs" / "edge.log"
            raise StackError(f"the edge exited during start-up; last lines of {log}:\n{tail(log)}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise StackError(f"the edge did not become ready at {url} within {timeout:.0f} s")


def run_demo(
    settings: Settings, rate: float = 5.0, duration: float = 0.0, tenants: str = "acme,globex"
) -> int:
    names = [t.strip() for t in tenants.split(",") if t.strip()]
    # Ctrl-C and SIGTERM both stop the demo cleanly, even when it was started from a
    # context that ignores SIGINT (a background job of a non-interactive shell).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupted)
    stack_was_running = manage.nodes(settings).kafka.process.pid() is not None
    edge, worker = _procs(settings)
    try:
        manage.up(settings, say=_say)  # Step 1.
        start_service(settings, worker, "worker")  # Step 2.
        start_service(settings, edge, "serve")
        _say("demo: waiting for the edge …")
        wait_ready(settings, edge)  # Step 3.
        _publish_example_pack(settings, names[0])
        token = mint_token(
            ensure_dev_keys(settings.state_dir),
            sub="demo-viewer",
            tenant=names[0],
            roles=["subscriber"],
            ttl_seconds=8 * 3600,
            issuer=settings.issuer,
            audience=settings.audience,
        )
        base = f"http://{settings.http}"
        worker_metrics = worker_metrics_address(child_env(settings))
        print(
            f"\nledgerflow demo is running ({', '.join(names)}; {rate:g} events/s).\n"
            f"  edge:      {base}   (health {base}/healthz, metrics {base}/metrics)\n"
            f"  worker:    metrics {f'http://{worker_metrics}/metrics' if worker_metrics else 'off'}\n"
            f"  console:   {base}/console/   paste the token below to sign in (read-only), or an admin one:\n"
            f"             .venv/bin/ledgerflow token --tenant {names[0]} --roles subscriber,admin\n"
            f"  logs:      {settings.state_dir / 'logs'}\n"
            f"  live SSE of tenant {names[0]!r}:\n"
            f"    curl -N -H 'Authorization: Bearer {token}' {base}/v1/streams/tenant\n"
            f"  a conversation's read model:\n"
            f"    curl -H 'Authorization: Bearer {token}' {base}/v1/conversations/<conversation id>\n"
            f"Ctrl-C stops everything this demo started.\n",
            flush=True,
        )
        asyncio.run(_run(settings, names, rate, duration, f"{base}/v1/streams/tenant", token))  # Step 4.
    except KeyboardInterrupt:
        pass
    finally:
        _say("demo: stopping …")  # Step 5.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for proc in (edge, worker):
            if stop(proc):
                _say(f"{proc.name}: stopped")
        if not stack_was_running:
            manage.down(settings, say=_say)
    return 0


EXAMPLE_PACK = Path(__file__).resolve().parents[1] / "examples" / "rulepacks" / "acme.json"


def _publish_example_pack(settings: Settings, tenant: str) -> None:
    """Give the first tenant its own constitution (the others use the default pack)."""
    if not EXAMPLE_PACK.exists() or asyncio.run(latest_version(settings, tenant)) > 0:
        return
    document = orjson.loads(EXAMPLE_PACK.read_bytes())
    document["tenant"] = tenant
    published = asyncio.run(publish_pack(settings, document, producer_name="demo"))
    _say(f"demo: published rule pack v{published.version} for {tenant} ({published.constitution_hash[:12]}…)")


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _procs(settings: Settings) -> tuple[Managed, Managed]:
    edge, worker = manage.service_processes(settings)
    return edge, worker


async def _run(
    settings: Settings, tenants: list[str], rate: float, duration: float, url: str, token: str
) -> None:
    """Traffic in, and the first tenant's live SSE stream printed as it arrives."""
    viewer = asyncio.create_task(_show_stream(url, token))
    try:
        await _traffic(settings, tenants, rate, duration)
        await asyncio.sleep(1.0)  # let the last frames arrive
    finally:
        viewer.cancel()


async def _show_stream(url: str, token: str) -> None:
    async with httpx.AsyncClient() as client:
        while True:
            try:
                async for frame in follow(client, url, token):
                    if frame.id is not None:
                        print(describe_frame(frame.event, frame.data), flush=True)
            except httpx.HTTPError as exc:
                _say(f"demo: SSE connection dropped ({exc!r}); reconnecting")
                await asyncio.sleep(1.0)


def describe_frame(event: str, data: str) -> str:
    """One line per SSE frame for the demo console."""
    body = orjson.loads(data)
    payload = body.get("payload", {})
    who = f"[{body.get('tenant')}] {body.get('subject')}"
    if event == "MessageSubmitted":
        text = payload.get("content", "")
        return f"sse {who}  {payload.get('role'):<9} {text[:70]!r}"
    if event == "PolicyDecision":
        rules = ",".join(payload.get("matched_rules", [])) or "-"
        return f"sse {who}  decision  {payload.get('outcome'):<6} score={payload.get('score')} rules={rules}"
    return f"sse {who}  {event}"


async def _traffic(settings: Settings, tenants: list[str], rate: float, duration: float) -> None:
    rng = random.Random()
    stop_event = asyncio.Event()
    if duration > 0:
        asyncio.get_running_loop().call_later(duration, stop_event.set)
    events = interleaved(rng, tenants, conversations=10**9, start_micros=time.time_ns() // 1000)
    # Timestamps follow the wall clock: re-stamp each event as it is sent.
    sent = await publish(settings, _restamped(events), rate=rate, stop=stop_event)
    _say(f"demo: published {sent} events")


def _restamped(events: Iterator[Event]) -> Iterator[Event]:
    for event in events:
        yield replace(event, occurred_at=time.time_ns() // 1000)
