"""Rebuild-and-switch under live reads: no read fails or sees a half-built projection."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import threading
import time

import httpx

from ledgerflow.config import Settings
from ledgerflow.demo import child_env
from ledgerflow.projections.keys import Keys, active_pointer
from ledgerflow.redisclient import sync_client
from ledgerflow.traffic import interleaved, publish
from tests.support.processes import Process


def test_rebuild_switches_atomically_under_live_reads(
    settings: Settings, worker: Process, edge: str, tokens
) -> None:
    events = list(interleaved(random.Random(3), ["acme"], 150, time.time_ns() // 1000, run_id="r"))
    asyncio.run(publish(settings, iter(events), progress_every_s=0))
    closed = {e.subject for e in events if e.type == "ConversationClosed"}
    turns = {c: sum(1 for e in events if e.subject == c and e.type == "MessageSubmitted") for c in closed}
    headers = {"Authorization": f"Bearer {tokens('acme', 'subscriber')}"}
    watched = sorted(closed)[:5]
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:  # the live projection has everything
        views = [httpx.get(f"{edge}/v1/conversations/{c}", headers=headers).json() for c in watched]
        if all(v.get("status") == "closed" and v["turn_count"] == turns[c] for v, c in zip(views, watched)):
            break
        time.sleep(0.5)
    else:
        raise AssertionError("live projection did not catch up")

    failures: list[str] = []
    reads = 0
    stop = threading.Event()

    def reader() -> None:
        nonlocal reads
        with httpx.Client(timeout=10) as client:
            while not stop.is_set():
                for c in watched:
                    resp = client.get(f"{edge}/v1/conversations/{c}", headers=headers)
                    reads += 1
                    view = resp.json()
                    if (
                        resp.status_code != 200
                        or view.get("turn_count") != turns[c]
                        or view["status"] != "closed"
                    ):
                        failures.append(f"{resp.status_code} {str(view)[:200]}")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ledgerflow.cli", "projections", "rebuild"],
            env=child_env(settings),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        time.sleep(1.0)
        stop.set()
        thread.join()
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["old_generation"] != result["new_generation"] and result["old_keys_removed"] > 0
    assert reads > 20 and failures == [], failures[:3]
    client = sync_client(settings.redis_url)
    assert client.get(active_pointer(settings.topic_prefix)).decode() == result["new_generation"]
    old = Keys.for_prefix(settings.topic_prefix, result["old_generation"])
    assert list(client.scan_iter(match=old.namespace + "*")) == []
    # New traffic after the switch lands in the new generation.
    more = list(interleaved(random.Random(4), ["acme"], 3, time.time_ns() // 1000, run_id="after"))
    asyncio.run(publish(settings, iter(more), progress_every_s=0))
    target = more[0].subject
    deadline = time.monotonic() + 60
    while httpx.get(f"{edge}/v1/conversations/{target}", headers=headers).status_code != 200:
        assert time.monotonic() < deadline, f"post-switch traffic not projected\n{worker.log_tail()}"
        time.sleep(0.5)
