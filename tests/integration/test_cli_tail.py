"""``ledgerflow tail`` as a subprocess against a real edge: pretty and JSON output, resume from a
printed cursor, a reconnect across an edge restart with neither gap nor duplicate (also before
the tail's first event: it resumes from its stream's checkpoint), and a reconnect the edge
refuses for a while (429: the tenant's streams are taken) waited out, not fatal."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.demo import child_env
from ledgerflow.topics import CONVERSATION_EVENTS
from tests.integration import edgekit
from tests.integration.clikit import run_cli
from tests.support.processes import free_port, running_edge, start, wait_http_ready
from tests.support.turns import publish_turns


async def _say(settings: Settings, conversation: str, *texts: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for i, text in enumerate(texts):
            event = new_event(
                "MessageSubmitted",
                tenant="acme",
                subject=conversation,
                payload=MessageSubmitted(f"{text}-{i}", "user", text, "slm-1"),
                producer="test",
                occurred_at_micros=time.time_ns() // 1000,
            )
            await producer.send_and_wait(
                settings.topic(CONVERSATION_EVENTS), codec.encode(event), key=conversation.encode()
            )
    finally:
        await producer.stop()


def _edge_settings(settings: Settings, edge: str) -> Settings:
    return settings.with_overrides(http=edge.removeprefix("http://"))


class Tail:
    """``ledgerflow tail ARGS`` in the background, returned once its stream is open."""

    def __init__(self, settings: Settings, *args: str) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow.cli", "tail", *args],
            env=child_env(settings) | {"PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.popen.stderr is not None
        began = time.monotonic()
        first = self.popen.stderr.readline()
        assert first.startswith("tail: following http://"), first
        # Said on the stream's first block (its checkpoint), not on the first event or heartbeat (15 s).
        assert time.monotonic() - began < 10

    def finish(self, timeout: float = 60.0) -> tuple[list[str], str]:
        try:
            out, err = self.popen.communicate(timeout=timeout)
        finally:
            self.popen.kill()
        assert self.popen.returncode == 0, err
        return out.splitlines(), err


def _contents(lines: list[str]) -> list[str]:
    """The contents of the data frames (control frames have no id)."""
    frames = [json.loads(line) for line in lines]
    return [f["data"]["payload"]["content"] for f in frames if f["id"] is not None]


def test_json_frames_then_resume_from_the_printed_cursor(settings: Settings, edge: str) -> None:
    at_edge = _edge_settings(settings, edge)
    tail = Tail(at_edge, "c1", "--tenant", "acme", "--count", "2", "--json")
    asyncio.run(_say(settings, "c1", "one", "two", "three"))
    lines, err = tail.finish()
    frames = [json.loads(line) for line in lines]
    assert [f["data"]["payload"]["content"] for f in frames] == ["one", "two"]
    assert all(f["event"] == "MessageSubmitted" and f["id"] for f in frames)
    assert "resume with" not in err  # --json: stdout is for frames, the cursor is in them

    cursor = frames[0]["id"]
    pretty = run_cli(at_edge, "tail", "c1", "--tenant", "acme", "--count", "1", "--last-event-id", cursor)
    line = pretty.out.strip()
    assert "MessageSubmitted" in line and " c1 " in line and line.endswith("user two-1: two")
    printed = pretty.err.strip().splitlines()[-1].removeprefix("tail: resume with --last-event-id ")
    resumed = run_cli(
        at_edge, "tail", "c1", "--tenant", "acme", "--count", "1", "--last-event-id", printed, "--json"
    )
    assert _contents(resumed.out.splitlines()) == ["three"]


def test_tail_follows_across_an_edge_restart(settings: Settings, log_dir: Path) -> None:
    at_edge = settings.with_overrides(http=f"127.0.0.1:{free_port()}")
    base = f"http://{at_edge.http}"
    edge = start(at_edge, "edge", "serve", log_dir=log_dir)
    wait_http_ready(edge, base)
    tail = Tail(at_edge, "c9", "--tenant", "acme", "--count", "2", "--json")
    try:
        asyncio.run(_say(settings, "c9", "before"))
        assert tail.popen.stdout is not None
        assert _contents([tail.popen.stdout.readline()]) == ["before"]
        edge.stop()  # SIGTERM: the stream ends with `shutdown`; the tail keeps its cursor
        asyncio.run(_say(settings, "c9", "while-down"))
        edge = start(at_edge, "edge", "serve", log_dir=log_dir)
        wait_http_ready(edge, base)
        lines, err = tail.finish()
    finally:
        edge.stop()
    assert _contents(lines) == ["while-down"]  # no gap (it was written while no edge ran), no duplicate
    assert json.loads(lines[0])["event"] == "shutdown"  # the control frame, shown as such
    assert f"tail: resumed {base}/v1/conversation/stream?conversation_id=c9" in err


def test_tail_failures_are_one_line(settings: Settings, edge: str) -> None:
    nothing = settings.with_overrides(http=f"127.0.0.1:{free_port()}")
    down = run_cli(nothing, "tail", "c1", "--tenant", "acme")
    assert down.code == 1
    assert down.one_line().startswith(f"ledgerflow: no edge answers at http://{nothing.http} (ConnectError)")
    at_edge = _edge_settings(settings, edge)
    refused = run_cli(at_edge, "tail", "--token", "abc.def.ghi")
    assert refused.code == 2
    assert refused.one_line().startswith(
        f"ledgerflow: the edge at {edge} refused the stream (401): bearer token is not a JWT"
    )
    assert "abc.def.ghi" not in refused.err
    nobody = run_cli(at_edge, "tail", "c1", drop=("LEDGERFLOW_TOKEN",))
    assert nobody.code == 2
    assert (
        nobody.one_line()
        == "ledgerflow: tail needs --tenant T (to mint a dev token) or --token / LEDGERFLOW_TOKEN"
    )


@pytest.mark.parametrize("given", [None, "garbage"])
def test_tail_resumes_from_its_checkpoint_when_the_edge_restarts_before_its_first_event(
    settings: Settings, log_dir: Path, given: str | None
) -> None:
    """A tail that has shown nothing yet resumes from where its stream began: the turn written
    while no edge ran is shown. Before, the tail kept no cursor until a data frame, reconnected
    live (or, given a cursor the edge had reset, with that cursor again: another reset to live)
    and never showed it."""
    at_edge = settings.with_overrides(http=f"127.0.0.1:{free_port()}")
    base = f"http://{at_edge.http}"
    edge = start(at_edge, "edge", "serve", log_dir=log_dir)
    wait_http_ready(edge, base)
    resume = ["--last-event-id", given] if given else []
    tail = Tail(at_edge, "c8", "--tenant", "acme", "--count", "1", "--json", *resume)
    try:
        edge.stop()  # the tail's stream ends with `shutdown` before any event
        asyncio.run(_say(settings, "c8", "while-down"))
        edge = start(at_edge, "edge", "serve", log_dir=log_dir)
        wait_http_ready(edge, base)
        lines, err = tail.finish()
    finally:
        edge.stop()
    assert _contents(lines) == ["while-down"]
    controls = [json.loads(line)["event"] for line in lines if json.loads(line)["id"] is None]
    assert controls == (["reset", "shutdown"] if given else ["shutdown"])
    assert f"tail: resumed {base}/v1/conversation/stream?conversation_id=c8" in err


def test_a_refused_reconnect_is_waited_out(settings: Settings, log_dir: Path) -> None:
    """One stream per tenant and a mailbox of 2: a burst overflows the tail's stream; while it
    waits to reconnect another client takes the tenant's only stream for 4 s, so the reconnect
    is a 429 (Retry-After: 5). The tail waits it out and shows every turn once, in order. Before,
    the 429 ended the tail (`the edge ... answered 429`, exit 1)."""
    limits = {"LEDGERFLOW_SSE_PER_TENANT": "1", "LEDGERFLOW_SSE_QUEUE": "2"}
    with running_edge(settings, log_dir, limits) as (_, base):
        at_edge = _edge_settings(settings, base)
        tail = Tail(at_edge, "c7", "--tenant", "acme", "--count", "30", "--json")
        took, stop = threading.Event(), threading.Event()
        grabber = threading.Thread(target=_take_the_slot, args=(settings, base, took, stop), daemon=True)
        grabber.start()
        try:
            asyncio.run(publish_turns(settings, "c7", 30, "burst"))
            assert took.wait(30), "the tail's stream did not end (no overflow)"
            time.sleep(4)
        finally:
            stop.set()
            grabber.join(10)
        lines, err = tail.finish()
    frames = [json.loads(line) for line in lines]
    turns = [f["data"]["payload"]["turn_id"] for f in frames if f["id"] is not None]
    assert turns == [f"t{i}" for i in range(30)]
    assert [f["event"] for f in frames if f["id"] is None] == ["overflow"]
    assert "answered 429" in err and "reconnecting in 5 s" in err, err
    assert f"tail: resumed {base}/v1/conversation/stream?conversation_id=c7" in err


def _take_the_slot(settings: Settings, base: str, took: threading.Event, stop: threading.Event) -> None:
    """Open acme's tenant stream as soon as the edge lets it (429 until then), hold it until ``stop``."""
    headers = edgekit.bearer(settings, roles="subscriber")
    with httpx.Client(timeout=httpx.Timeout(10, read=None)) as client:
        while not stop.is_set():
            with client.stream("GET", f"{base}/v1/streams/tenant", headers=headers) as resp:
                if resp.status_code == 200:
                    took.set()
                    stop.wait(4)
                    return
                assert resp.status_code == 429, resp.read()
            time.sleep(0.02)
