"""`ledgerflow projections rebuild` and `ledgerflow audit` stopped or failing half-way leave
nothing behind and nothing half-switched, as real processes on the real broker.

Found by probing the operator tools (each failed on the old code):

- Ctrl-C (SIGINT) mid-rebuild left the half-built generation and its replay token in Redis for
  good (45,735 keys of 120,000 in the probe); a Redis refusing writes (OOM) left it too, with an
  `unexpected OutOfMemoryError: Command # 1 (EVAL …` line;
- SIGTERM (a service manager, `timeout`, a cancelled CI job) ended the parent on the spot: the
  generation or the audit's scratch space stayed, and the spawned worker processes, orphaned,
  blocked for ever on their result pipe holding the caller's stdout/stderr open; SIGKILL the same;
- Ctrl-C mid-audit left the scratch space `lf:audit:<random>:` (asyncio.gather returned at the
  first cancelled task and asyncio.run cancelled the clean-up itself);
- two rebuilds at once: each deleted the generation active when it *started*, so the first one's
  new generation, replaced by the second's switch, stayed in Redis for good (a full copy).

Each test runs its OWN Redis (a private ``redis-server`` on a free port: the ``lf:audit:*`` and
generation keys counted are this test's only); Kafka is the shared broker, one topic prefix for
the module, published to once.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from ledgerflow.config import Settings, child_env
from ledgerflow.kafka.admin import ensure_topics
from ledgerflow.projections.keys import active_pointer
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import stop
from ledgerflow.traffic import interleaved, publish
from tests.support.processes import free_port

CONVERSATIONS = 6000  # about 42,000 records: a rebuild runs a few seconds on a shared 2-core VM
WORKERS = "2"
EXIT_S = 60.0


@pytest.fixture(scope="module")
def logs(stack: Settings) -> Settings:
    """A topic prefix of its own with ``CONVERSATIONS`` conversations published (no worker: the
    rebuild and the audit read the logs only)."""
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings))
    events = interleaved(random.Random(7), ["acme", "globex"], CONVERSATIONS, time.time_ns() // 1000)
    asyncio.run(publish(settings, events, progress_every_s=0))
    return settings


@pytest.fixture
def private(logs: Settings, tmp_path: Path) -> Iterator[tuple[Settings, redis.Redis]]:
    """The module's logs with a private Redis whose live read models are complete (one rebuild)."""
    node = redis_stack.RedisNode(tmp_path / "redis", "127.0.0.1", free_port())
    redis_stack.start(node)
    settings = logs.with_overrides(redis_url=f"redis://{node.host}:{node.port}/0")
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10)
    try:
        done = _cli(settings, "projections", "rebuild", processes="1")
        _, err = done.communicate(timeout=300)
        assert done.returncode == 0, err
        yield settings, client
    finally:
        client.close()
        stop(node.process)


def _cli(settings: Settings, *args: str, processes: str = WORKERS) -> subprocess.Popen[str]:
    """``ledgerflow ARGS`` in a session (process group) of its own."""
    env = child_env(settings) | {"LEDGERFLOW_REBUILD_PROCESSES": processes, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "ledgerflow.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _generations(client: redis.Redis, settings: Settings) -> set[str]:
    """The generations that have keys in Redis."""
    prefix = f"lf:{settings.topic_prefix}rm:"
    keys = client.scan_iter(match=prefix + "*", count=1000)
    return {k.decode()[len(prefix) :].split(":", 1)[0] for k in keys} - {"active"}


def _active(client: redis.Redis, settings: Settings) -> str:
    return (client.get(active_pointer(settings.topic_prefix)) or b"v1").decode()


def _when(check: Callable[[], bool], proc: subprocess.Popen[str], why: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, f"ended before {why}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"not {why} after {seconds} s"
        time.sleep(0.01)


def _alive_in_group(pgid: int) -> list[int]:
    """The processes of the process group ``pgid`` that still run (zombies not counted)."""
    alive = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(entry))
    return alive


def _group_ends(pgid: int, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while (alive := _alive_in_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive:  # do not leave them running after a failed test
        os.kill(pid, signal.SIGKILL)
    assert alive == [], f"processes of the stopped command still running {seconds} s later: {alive}"


def _ended(proc: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=EXIT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise AssertionError(f"the command, or a process holding its output, ran on {EXIT_S} s") from None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_rebuild_leaves_nothing_behind_and_runs_again(
    private: tuple[Settings, redis.Redis], sig: signal.Signals
) -> None:
    settings, client = private
    live = _active(client, settings)
    rebuild = _cli(settings, "projections", "rebuild")
    _when(lambda: len(_generations(client, settings)) > 1, rebuild, "writing a new generation")
    rebuild.send_signal(sig)
    out, err = _ended(rebuild)
    assert rebuild.returncode == 130, (rebuild.returncode, err)
    _group_ends(rebuild.pid)
    assert _active(client, settings) == live, "switched"
    assert _generations(client, settings) == {live}, "the half-built generation was left in Redis"
    again = _cli(settings, "projections", "rebuild")
    out, err = _ended(again)
    assert again.returncode == 0, err
    assert json.loads(out)["new_generation"] == _active(client, settings)
    assert _generations(client, settings) == {_active(client, settings)}


def test_a_killed_rebuild_stops_its_worker_processes(private: tuple[Settings, redis.Redis]) -> None:
    settings, client = private
    rebuild = _cli(settings, "projections", "rebuild")
    _when(lambda: len(_generations(client, settings)) > 1, rebuild, "writing a new generation")
    rebuild.kill()
    rebuild.wait(EXIT_S)
    _group_ends(rebuild.pid)  # the old workers blocked for ever on their result pipe


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_audit_deletes_its_scratch_space(
    private: tuple[Settings, redis.Redis], sig: signal.Signals
) -> None:
    settings, client = private
    audit = _cli(settings, "audit", "--quiet")
    scratch = lambda: next(client.scan_iter(match="lf:audit:*", count=1000), None) is not None  # noqa: E731
    _when(scratch, audit, "rebuilding into its scratch space")
    audit.send_signal(sig)
    _, err = _ended(audit)
    assert audit.returncode == 130, (audit.returncode, err)
    _group_ends(audit.pid)
    assert list(client.scan_iter(match="lf:audit:*", count=1000)) == [], "the scratch space was left in Redis"


def test_two_rebuilds_at_once_leave_only_the_active_generation(private: tuple[Settings, redis.Redis]) -> None:
    settings, client = private
    first, second = (_cli(settings, "projections", "rebuild", processes="1") for _ in range(2))
    results = []
    for proc in (first, second):
        out, err = _ended(proc)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    active = _active(client, settings)
    assert active in {r["new_generation"] for r in results}
    assert _generations(client, settings) == {active}, "a rebuild's generation was left behind"
    # Each names the generation its switch replaced: the two switches form a chain.
    earlier, later = sorted(results, key=lambda r: r["new_generation"] == active)
    assert later["old_generation"] == earlier["new_generation"]


def test_a_redis_refusing_writes_mid_rebuild_is_one_line_and_switches_nothing(
    private: tuple[Settings, redis.Redis],
) -> None:
    settings, client = private
    live = _active(client, settings)
    rebuild = _cli(settings, "projections", "rebuild")
    try:
        _when(lambda: len(_generations(client, settings)) > 1, rebuild, "writing a new generation")
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + 1_000_000)  # noeviction: every write is refused soon
        _, err = _ended(rebuild)
    finally:
        client.config_set("maxmemory", 0)
    assert rebuild.returncode == 1, err
    assert err.count("\n") == 1 and err.startswith("ledgerflow: "), err
    assert "refuses commands (OOM) during the rebuild (nothing was switched" in err, err
    _group_ends(rebuild.pid)
    assert _active(client, settings) == live
    assert _generations(client, settings) == {live}, "the half-built generation was left in Redis"
