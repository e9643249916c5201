"""A Redis that is up but refuses commands for now — BUSY (a script running past
``busy-reply-threshold``), MISCONF (its last background save failed) — is a dependency fault like
a Redis that is down: the edge answers 503 with Retry-After (not a 500 with a traceback) and
recovers once Redis does; the worker's projector backs off (``ledgerflow_projector_redis_up`` 0,
one log line) and catches up after, instead of stopping the worker (a BUSY reply escaping its
catch-up timer did).

Each test runs its OWN Redis (a private ``redis-server`` on a free port) that it makes busy or
misconfigured; Kafka is the shared test broker (each test has its own topic prefix).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from ledgerflow.config import Settings
from ledgerflow.contracts.events import Event
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import stop
from ledgerflow.traffic import interleaved, publish
from tests.integration.edgekit import bearer
from tests.support.processes import Process, free_port, pipeline_settled, running_edge, start

CLIENT_TIMEOUT_S = 20.0
SETTLE_S = 180.0
BUSY_SCRIPT_S = 90
"""The busy script ends by itself after this many seconds, should ``SCRIPT KILL`` never come."""

# Spins without writing (so SCRIPT KILL may stop it) until ARGV[1] seconds have passed.
BUSY_SCRIPT = """
local started = tonumber(redis.call('TIME')[1])
while tonumber(redis.call('TIME')[1]) - started < tonumber(ARGV[1]) do end
return 1
"""


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[redis_stack.RedisNode]:
    node = redis_stack.RedisNode(tmp_path / "redis", "127.0.0.1", free_port())
    redis_stack.start(node, extra=("--enable-protected-configs", "yes"))  # CONFIG SET dir (MISCONF)
    yield node
    with contextlib.suppress(redis.RedisError):  # a test that failed while Redis was busy
        _client(node).script_kill()
    stop(node.process)


def _url(node: redis_stack.RedisNode) -> str:
    return f"redis://{node.host}:{node.port}/0"


def _client(node: redis_stack.RedisNode) -> redis.Redis:
    return redis.Redis.from_url(_url(node), socket_timeout=10)


@contextlib.contextmanager
def busy(node: redis_stack.RedisNode) -> Iterator[None]:
    """Redis answers every other client ``BUSY`` (a script past a 100 ms ``busy-reply-threshold``)
    inside the block; ``SCRIPT KILL`` at its end."""
    with _client(node) as admin:
        admin.config_set("busy-reply-threshold", 100)
        ended: list[BaseException | None] = []

        def run() -> None:
            try:
                with redis.Redis.from_url(_url(node), socket_timeout=BUSY_SCRIPT_S + 30) as spinner:
                    spinner.eval(BUSY_SCRIPT, 0, BUSY_SCRIPT_S)
                ended.append(None)
            except redis.RedisError as exc:  # "Script killed by user with SCRIPT KILL"
                ended.append(exc)

        spinner = threading.Thread(target=run, daemon=True)
        spinner.start()
        _until(lambda: _busy_now(admin), 30, "Redis never answered BUSY")
        try:
            yield
        finally:
            _until(lambda: _killed(admin), 30, "SCRIPT KILL did not stop the busy script")
            spinner.join(30)
        assert ended and "SCRIPT KILL" in str(ended[0]), f"the busy script ended otherwise: {ended!r}"


def _busy_now(admin: redis.Redis) -> bool:
    try:
        admin.ping()
    except redis.ResponseError as exc:
        return str(exc).startswith("BUSY")
    return False


def _killed(admin: redis.Redis) -> bool:
    try:
        admin.script_kill()
    except redis.ResponseError as exc:
        if not str(exc).startswith("NOTBUSY"):
            raise
    return not _busy_now(admin)


@contextlib.contextmanager
def misconfigured(node: redis_stack.RedisNode) -> Iterator[None]:
    """Redis refuses every write with ``MISCONF`` inside the block: a background save into a
    directory it cannot write (``/proc``) failed while ``stop-writes-on-bgsave-error`` is on (its
    default). Saving switched off and the directory put back at its end."""
    with _client(node) as admin:
        admin.config_set("stop-writes-on-bgsave-error", "yes")
        admin.config_set("save", "3600 1")
        admin.config_set("dir", "/proc")
        admin.bgsave()
        _until(lambda: _last_save(admin) == "err", 30, "BGSAVE did not fail")
        try:
            with pytest.raises(redis.ResponseError, match="^MISCONF"):
                admin.set("refusals:probe", "1")
            yield
        finally:
            admin.config_set("dir", str(node.dir))
            admin.config_set("save", "")
        assert admin.set("refusals:probe", "1")


def _last_save(admin: redis.Redis) -> str:
    return str(admin.info("persistence")["rdb_last_bgsave_status"])


def _until(check: Callable[[], bool], seconds: float, why: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, why
        time.sleep(0.1)


def _turn(conv: str) -> dict:
    return {
        "type": "MessageSubmitted",
        "subject": conv,
        "event_id": str(uuid.uuid4()),
        "payload": {"turn_id": "t1", "role": "user", "content": "hi", "model": "m", "tokens": None},
    }


def _requests(edge: str, settings: Settings, label: str) -> dict[str, Callable[[], httpx.Response]]:
    """An event and a step (with an Idempotency-Key), each sent again as the same request."""
    headers = bearer(settings)
    event = _turn(f"ev-{label}")
    return {
        "event": lambda: httpx.post(
            f"{edge}/v1/events", json=event, headers=headers, timeout=CLIENT_TIMEOUT_S
        ),
        "step": lambda: httpx.post(
            f"{edge}/v1/conversation/step",
            json={"conversation_id": f"st-{label}", "content": "hello"},
            headers=headers | {"Idempotency-Key": f"key-{label}"},
            params={"wait": 0},
            timeout=CLIENT_TIMEOUT_S,
        ),
    }


def _assert_503(name: str, resp: httpx.Response) -> None:
    assert resp.status_code == 503, f"{name}: {resp.status_code} {resp.text}"
    assert resp.headers["content-type"].startswith("application/problem+json"), name
    assert int(resp.headers["retry-after"]) > 0, name


def _accepted_again(name: str, send: Callable[[], httpx.Response]) -> httpx.Response:
    """``send`` again until it is accepted (202): the edge recovers by itself once Redis does."""
    deadline = time.monotonic() + 60
    while True:
        resp = send()
        if resp.status_code == 202:
            return resp
        _assert_503(name, resp)
        assert time.monotonic() < deadline, f"{name}: still {resp.status_code} 60 s after Redis answered"
        time.sleep(0.5)


def test_the_edge_answers_a_busy_or_misconfigured_redis_with_503_and_recovers(
    settings: Settings, private_redis: redis_stack.RedisNode, log_dir: Path
) -> None:
    ours = settings.with_overrides(redis_url=_url(private_redis))
    with running_edge(ours, log_dir) as (proc, edge):
        for name, send in _requests(edge, ours, "before").items():
            assert send().status_code == 202, name
        for fault, label in ((busy, "busy"), (misconfigured, "misconf")):
            requests = _requests(edge, ours, label)
            with fault(private_redis):
                for name, send in requests.items():
                    _assert_503(f"{label} {name}", send())
            for name, send in requests.items():
                first = _accepted_again(f"after {label} {name}", send)
                again = send()  # its idempotency record holds the position: the same answer
                assert again.status_code == 202, f"after {label} {name} again: {again.text}"
                assert again.json()["event_id"] == first.json()["event_id"]
        log = proc.log.read_text(errors="replace")
    assert "unhandled error" not in log and "Traceback" not in log, log[-4000:]


def _publish(settings: Settings, events: list[Event]) -> None:
    asyncio.run(publish(settings, iter(events), rate=0.0, progress_every_s=0))


def _turn_count(events: list[Event]) -> int:
    return sum(e.type == "MessageSubmitted" for e in events)


def _wait_settled(settings: Settings, turns: int, worker: Process) -> None:
    deadline = time.monotonic() + SETTLE_S
    why = ""
    while time.monotonic() < deadline:
        assert worker.popen.poll() is None, f"the worker exited:\n{worker.log_tail()}"
        done, why = asyncio.run(pipeline_settled(settings, turns))
        if done:
            return
        time.sleep(0.5)
    raise AssertionError(f"the pipeline did not settle in {SETTLE_S:.0f} s: {why}\n{worker.log_tail()}")


def _redis_up(port: int, worker: Process) -> float | None:
    """``ledgerflow_projector_redis_up`` on the worker's metrics endpoint; None until it serves it."""
    assert worker.popen.poll() is None, f"the worker exited:\n{worker.log_tail()}"
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    for line in text.splitlines():
        if line.startswith("ledgerflow_projector_redis_up "):
            return float(line.rpartition(" ")[2])
    return None


def test_the_worker_backs_off_while_redis_is_busy_and_catches_up_after(
    settings: Settings, private_redis: redis_stack.RedisNode, log_dir: Path
) -> None:
    ours = settings.with_overrides(redis_url=_url(private_redis))
    metrics = free_port()
    metrics_env = {"LEDGERFLOW_WORKER_METRICS": f"127.0.0.1:{metrics}"}
    worker = start(ours, "worker", "worker", log_dir=log_dir, extra_env=metrics_env)
    try:
        rng = random.Random(11)
        warm = list(interleaved(rng, ["acme"], 5, time.time_ns() // 1000, run_id="warm"))
        _publish(ours, warm)
        _wait_settled(ours, _turn_count(warm), worker)
        during = list(interleaved(rng, ["acme"], 5, time.time_ns() // 1000, run_id="busy"))
        with busy(private_redis):
            _publish(ours, during)  # turns the projector must write while Redis refuses
            # Refused long enough for several ticks of the projector's 2 s catch-up timer (the
            # one whose escaped BUSY stopped the worker), and until the worker shows Redis as down.
            time.sleep(6.0)
            _until(lambda: _redis_up(metrics, worker) == 0.0, 60, "redis_up never showed the refusal")
        _wait_settled(ours, _turn_count(warm) + _turn_count(during), worker)
        _until(lambda: _redis_up(metrics, worker) == 1.0, 60, "redis_up did not return to 1")
        log = worker.log.read_text(errors="replace")
        refusals = log.count("projector: Redis refusing commands: BUSY")
        assert 1 <= refusals <= 3, f"{refusals} lines for one refusal:\n{worker.log_tail()}"
        assert "projector: Redis is back" in log
        assert "checking the read models failed" not in log  # backed off inside, never escaped
    finally:
        worker.stop()
