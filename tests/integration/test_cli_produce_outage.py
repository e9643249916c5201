"""``ledgerflow produce`` through a broker outage, as a subprocess against a private Kafka whose
broker the test stops and starts (the shared dev stack is never touched).

Before: a broker down at the start ended produce at once with a connection error; a broker
stopped mid-run for longer than aiokafka's own retries lost events silently — their delivery
futures failed, nobody read them, and produce said "published N events", exit 0.
Now: one line says Kafka does not answer and for how long it is retried; when the broker is back
one line says so and every event is published (an event whose acknowledgement was lost may be
published twice, same ``event_id``); when it stays down past ``--retry-for``, one line, exit 1.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledgerflow.config import Settings, child_env
from ledgerflow.contracts import codec
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.kafka.logs import read_all
from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import manage
from ledgerflow.stack.processes import stop
from ledgerflow.topics import CONVERSATION_EVENTS
from tests.support.privatestack import private_settings, private_stack

RETRYING = re.compile(
    r"produce: Kafka at 127\.0\.0\.1:\d+ does not answer \(.+\); "
    r"retrying for up to \d+ s \(--retry-for, LEDGERFLOW_PRODUCE_RETRY_S\)"
)
BACK = re.compile(r"produce: Kafka is back after \d+\.\d s; going on")
PROGRESS = re.compile(r"produce: \d+ \(\d+/s\)")
PUBLISHED = re.compile(r"published (\d+) events of (\d+) conversations to (\S+)")


@pytest.fixture(scope="module")
def private(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """One private Kafka + Redis for the module; each test restarts the broker it stopped."""
    base = private_settings(tmp_path_factory.mktemp("produce-outage"), http="127.0.0.1:0")
    with private_stack(base):
        yield base


@pytest.fixture
def settings_p(private: Settings) -> Iterator[Settings]:
    settings = private.with_overrides(topic_prefix=f"p{uuid.uuid4().hex[:8]}.")
    asyncio.run(ensure_topics(settings))
    yield settings
    kafka_stack.start(manage.nodes(private).kafka)  # whatever the test did, the broker runs after it


def _produce(settings: Settings, log: Path, *args: str) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "ledgerflow.cli", "produce", *args],
            env=child_env(settings) | {"PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )


def _wait_for(log: Path, pattern: re.Pattern[str], proc: subprocess.Popen[bytes], within: float) -> None:
    deadline = time.monotonic() + within
    while not any(pattern.fullmatch(line) for line in log.read_text().splitlines()):
        assert proc.poll() is None, f"produce exited {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no {pattern.pattern!r} within {within} s:\n{log.read_text()}"
        time.sleep(0.2)


def _stop_broker(settings: Settings) -> None:
    assert stop(manage.nodes(settings).kafka.process), "the private broker did not stop"


def _finish(proc: subprocess.Popen[bytes], log: Path) -> tuple[int, str, list[str]]:
    out, _ = proc.communicate(timeout=120)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    return proc.returncode, out.decode(), lines


def _published_ids(settings: Settings) -> list[str]:
    records = asyncio.run(read_all(settings, settings.topic(CONVERSATION_EVENTS)))
    return [codec.decode(r.value or b"").event_id for r in records]


def test_a_broker_down_at_the_start_is_waited_for(settings_p: Settings, tmp_path: Path) -> None:
    _stop_broker(settings_p)
    log = tmp_path / "produce.err"
    proc = _produce(settings_p, log, "--count", "4")
    _wait_for(log, RETRYING, proc, 30)
    time.sleep(2)  # still retrying, not exited
    assert proc.poll() is None, log.read_text()
    kafka_stack.start(manage.nodes(settings_p).kafka)
    code, out, lines = _finish(proc, log)
    assert code == 0, "\n".join(lines)
    published = PUBLISHED.fullmatch(out.strip())
    assert published is not None, out
    assert [bool(RETRYING.fullmatch(x)) for x in lines].count(True) == 1, lines  # one line per outage
    assert [bool(BACK.fullmatch(x)) for x in lines].count(True) == 1, lines
    assert all(RETRYING.fullmatch(x) or BACK.fullmatch(x) or PROGRESS.fullmatch(x) for x in lines), lines
    ids = _published_ids(settings_p)
    assert len(set(ids)) == int(published.group(1)) > 4


def test_a_broker_stopped_mid_run_loses_no_event(settings_p: Settings, tmp_path: Path) -> None:
    log = tmp_path / "produce.err"
    proc = _produce(settings_p, log, "--count", "60", "--rate", "25")
    time.sleep(3)  # a few dozen events published
    assert proc.poll() is None, log.read_text()
    _stop_broker(settings_p)
    _wait_for(log, RETRYING, proc, 30)
    time.sleep(3)
    kafka_stack.start(manage.nodes(settings_p).kafka)
    code, out, lines = _finish(proc, log)
    assert code == 0, "\n".join(lines)
    published = PUBLISHED.fullmatch(out.strip().split(" (")[0])
    assert published is not None, out
    assert [bool(RETRYING.fullmatch(x)) for x in lines].count(True) == 1, lines
    assert [bool(BACK.fullmatch(x)) for x in lines].count(True) == 1, lines
    assert not [x for x in lines if "Traceback" in x or "exception" in x.lower()], lines
    ids = _published_ids(settings_p)
    assert len(set(ids)) == int(published.group(1)), "events said published are not on the log"


def test_a_broker_that_stays_down_ends_produce_with_one_line(settings_p: Settings, tmp_path: Path) -> None:
    _stop_broker(settings_p)
    log = tmp_path / "produce.err"
    began = time.monotonic()
    proc = _produce(settings_p, log, "--count", "4", "--retry-for", "3")
    code, out, lines = _finish(proc, log)
    took = time.monotonic() - began
    assert code == 1, lines
    assert out == ""
    assert len(lines) == 2, lines
    assert RETRYING.fullmatch(lines[0]), lines
    assert lines[1].startswith(
        f"ledgerflow: no Kafka broker at {settings_p.kafka_bootstrap} acknowledged an event for 3 s ("
    ), lines
    assert lines[1].endswith(
        "0 event(s) were published before it, the rest were not: start it (`ledgerflow stack status`) "
        "and run produce again, or allow longer with --retry-for"
    ), lines
    assert 3 <= took < 30, took
