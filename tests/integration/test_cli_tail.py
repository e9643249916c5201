"""``ledgerflow tail`` as a subprocess against a real edge: pretty and JSON output, resume from a
printed cursor, and a reconnect across an edge restart with neither gap nor duplicate."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer

from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import MessageSubmitted
from ledgerflow.demo import child_env
from ledgerflow.topics import CONVERSATION_EVENTS
from tests.integration.clikit import run_cli
from tests.support.processes import free_port, start, wait_http_ready


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
        first = self.popen.stderr.readline()
        assert first.startswith("tail: following http://"), first

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
