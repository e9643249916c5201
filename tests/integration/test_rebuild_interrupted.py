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
- a SIGKILLed rebuild (no clean-up code runs) left its generation for good and its replay token
  for 24 hours: now the token has a short lease its heartbeat renews and the next rebuild deletes
  generations neither the pointer names nor a live token owns (never a running rebuild's).

Each test runs its OWN Redis (a private ``redis-server`` on a free port: the ``lf:audit:*`` and
generation keys counted are this test's only); Kafka is the shared broker, one topic prefix for
the module, published to once.
"""

from __future__ import annotations

import asyncio
import contextlib
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


def _cli(settings: Settings, *args: str, processes: str = WORKERS, lease: str = "") -> subprocess.Popen[str]:
    """``ledgerflow ARGS`` in a session (process group) of its own (``lease``: its replay token's
    ``LEDGERFLOW_REBUILD_LEASE_S``, default when empty)."""
    env = child_env(settings) | {
        "LEDGERFLOW_REBUILD_PROCESSES": processes,
        "LEDGERFLOW_REBUILD_LEASE_S": lease,
        "PYTHONUNBUFFERED": "1",
    }
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


def _keys_of(client: redis.Redis, settings: Settings, generation: str) -> int:
    return sum(1 for _ in client.scan_iter(match=f"lf:{settings.topic_prefix}rm:{generation}:*", count=1000))


def _tokens(client: redis.Redis, settings: Settings) -> list[bytes]:
    """The replay tokens in Redis (``<namespace>replaying:<token>``)."""
    return list(client.scan_iter(match=f"lf:{settings.topic_prefix}rm:*:replaying:*", count=1000))


def _active(client: redis.Redis, settings: Settings) -> str:
    return (client.get(active_pointer(settings.topic_prefix)) or b"v1").decode()


def _when(check: Callable[[], bool], proc: subprocess.Popen[str], why: str, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert proc.poll() is None, f"ended before {why}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"not {why} after {seconds} s"
        time.sleep(0.01)


def _until(check: Callable[[], bool], why: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not {why} after {seconds} s"
        time.sleep(0.05)


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


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _pause_once_writing(proc: subprocess.Popen[str], paused: set[int], writing: Callable[[], bool]) -> None:
    """Let ``proc``'s worker processes (its process group but itself) run in 50 ms steps until
    ``writing()``, then leave them stopped (SIGSTOP; ``paused`` holds them for SIGCONT)."""
    deadline = time.monotonic() + 120.0
    while True:
        assert proc.poll() is None, f"ended before writing: {proc.communicate()}"
        assert time.monotonic() < deadline, "no new generation written after 120 s"
        for pid in set(_alive_in_group(proc.pid)) - {proc.pid}:
            _signal(pid, signal.SIGSTOP)
            paused.add(pid)
        if writing():
            return
        for pid in paused:
            _signal(pid, signal.SIGCONT)
        time.sleep(0.05)


def _both_wrote(client: redis.Redis, settings: Settings, live: str) -> bool:
    """Whether both worker processes (partitions even, odd) of the rebuild writing a generation
    other than ``live`` have written a batch: each has its Redis connection (one stopped while
    connecting would time out when let go)."""
    for generation in _generations(client, settings) - {live}:
        fields = client.hkeys(f"lf:{settings.topic_prefix}rm:{generation}:checkpoint:read-models")
        if {int(f.rsplit(b":", 1)[1]) % 2 for f in fields} == {0, 1}:
            return True
    return False


def _building(client: redis.Redis, settings: Settings, live: str) -> bool:
    """Whether a generation other than ``live`` holds data (not just its replay token, set first)."""
    return any(_keys_of(client, settings, g) > 100 for g in _generations(client, settings) - {live})


LEASE = 2  # LEDGERFLOW_REBUILD_LEASE_S of the rebuilds below: seconds, refreshed every 0.4 s


def test_a_killed_rebuild_s_generation_and_token_are_removed_by_the_next_rebuild(
    private: tuple[Settings, redis.Redis],
) -> None:
    """A SIGKILL runs no clean-up: the generation stayed for good, its token 24 hours."""
    settings, client = private
    live = _active(client, settings)
    live_keys = _keys_of(client, settings, live)
    killed = _cli(settings, "projections", "rebuild", lease=str(LEASE))
    _when(lambda: _building(client, settings, live), killed, "writing a new generation")
    killed.kill()
    killed.wait(EXIT_S)
    _group_ends(killed.pid)
    (left,) = _generations(client, settings) - {live}
    assert _tokens(client, settings), "the killed rebuild's token is gone at once"
    _until(lambda: not _tokens(client, settings), "the killed rebuild's token expired", LEASE + 10.0)
    assert _keys_of(client, settings, left) > 0 and _active(client, settings) == live
    again = _cli(settings, "projections", "rebuild", processes="1")
    out, err = _ended(again)
    assert again.returncode == 0, err
    result = json.loads(out)
    assert result["abandoned_generations_removed"] == [left]
    assert _keys_of(client, settings, left) == 0, "the killed rebuild's generation was left in Redis"
    assert _tokens(client, settings) == []
    # The live read models were not touched by the sweep: the switch replaced them whole.
    assert (result["old_generation"], result["old_keys_removed"]) == (live, live_keys)
    assert _generations(client, settings) == {result["new_generation"]} == {_active(client, settings)}


def test_a_rebuild_does_not_remove_the_generation_of_one_still_running(
    private: tuple[Settings, redis.Redis],
) -> None:
    """The heartbeat keeps a running rebuild's token past its lease; a rebuild started meanwhile
    leaves that generation alone (had it removed it, the first one would fail: its token gone).
    The first one's worker processes are stopped (SIGSTOP) while the second runs whole: its parent,
    which keeps the token alive, runs on."""
    settings, client = private
    live = _active(client, settings)
    first = _cli(settings, "projections", "rebuild", lease=str(LEASE))
    workers: set[int] = set()
    try:
        _pause_once_writing(first, workers, lambda: _both_wrote(client, settings, live))
        (running,) = _generations(client, settings) - {live}
        time.sleep(2 * LEASE)
        assert _active(client, settings) == live and _tokens(client, settings), (
            "the running rebuild's token expired"
        )
        second = _cli(settings, "projections", "rebuild", processes="1", lease=str(LEASE))
        out, err = _ended(second)
        assert second.returncode == 0, err
        swept = json.loads(out)["abandoned_generations_removed"]
        assert swept == [] and _keys_of(client, settings, running) > 100
    finally:
        for pid in workers:
            _signal(pid, signal.SIGCONT)
    out, err = _ended(first)
    assert first.returncode == 0, err
    assert json.loads(out)["new_generation"] == running == _active(client, settings)
    assert _generations(client, settings) == {running}


AUDIT_LEASE = 4  # the audits below: their main process also checks the logs, so a little more slack


def _scratch_spaces(client: redis.Redis) -> dict[str, int]:
    """Each audit scratch space in Redis (``lf:audit:<id>:``) and how many keys it holds."""
    counts: dict[str, int] = {}
    for key in client.scan_iter(match="lf:audit:*", count=1000):
        space = key.decode().split(":")[2]
        counts[space] = counts.get(space, 0) + 1
    return counts


def _scratch_tokens(client: redis.Redis, space: str) -> list[bytes]:
    return list(client.scan_iter(match=f"lf:audit:{space}:replaying:*", count=1000))


def _scratch_written(client: redis.Redis, others: set[str]) -> bool:
    """Whether a scratch space not in ``others`` holds data (not just its lease, set first): the
    audit's worker process is writing (it has its Redis connection)."""
    return any(count > 100 for space, count in _scratch_spaces(client).items() if space not in others)


def _audit_report(proc: subprocess.Popen[str]) -> dict:
    """The JSON report of an audit run with ``--json -`` that ran to its end (clean or not)."""
    out, err = _ended(proc)
    assert proc.returncode in (0, 1), (proc.returncode, err)
    report = json.loads(out)
    assert "read models" in report["checks"], err
    return report


def test_a_killed_audit_s_scratch_space_is_removed_by_the_next_audit_never_a_running_one(
    private: tuple[Settings, redis.Redis],
) -> None:
    """A SIGKILL runs no clean-up: the audit's scratch space stayed in Redis for good. Now it is leased
    as a rebuild's generation is: the next audit removes it once its lease ran out, and leaves alone
    the space of an audit still running (whose worker process is stopped meanwhile, its main process
    keeping the lease)."""
    settings, client = private
    killed = _cli(settings, "audit", "--quiet", lease=str(AUDIT_LEASE))
    stopped: set[int] = set()  # the killed audit's worker process, stopped once it writes
    workers: set[int] = set()  # the running audit's
    running: subprocess.Popen[str] | None = None
    try:
        _pause_once_writing(killed, stopped, lambda: _scratch_written(client, set()))
        (left,) = _scratch_spaces(client)
        running = _cli(settings, "audit", "--quiet", "--json", "-", lease=str(AUDIT_LEASE))
        _pause_once_writing(running, workers, lambda: _scratch_written(client, {left}))
        os.killpg(killed.pid, signal.SIGKILL)  # the audit and its (stopped) worker process
        killed.wait(EXIT_S)
        _group_ends(killed.pid)
        (mine,) = set(_scratch_spaces(client)) - {left}
        assert _scratch_tokens(client, left), "the killed audit's token is gone at once"
        _until(
            lambda: not _scratch_tokens(client, left), "the killed audit's token expired", AUDIT_LEASE + 10.0
        )
        assert _scratch_spaces(client)[left] > 100
        kept = _scratch_spaces(client)[mine]
        assert _scratch_tokens(client, mine), "the running audit's token expired"

        report = _audit_report(_cli(settings, "audit", "--quiet", "--json", "-", lease=str(AUDIT_LEASE)))
        assert f"lf:audit:{left}:" in " ".join(report["notes"]), report["notes"]
        assert _scratch_spaces(client) == {mine: kept}, (
            "the killed audit's space stayed, or the running one's was touched"
        )
    except BaseException:  # no audit left running after a failed test
        for proc in (killed, running):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        raise
    finally:
        for pid in workers:
            _signal(pid, signal.SIGCONT)
    _audit_report(running)  # its space intact and its lease alive: it compared and ended as any audit does
    assert _scratch_spaces(client) == {}


def test_an_audit_whose_lease_went_while_it_ran_compares_nothing_and_says_so(
    private: tuple[Settings, redis.Redis],
) -> None:
    """Its token gone (expired while the audit stalled, then its space maybe swept by another audit):
    the scratch space can no longer be trusted to be whole. One line, exit 3, no report of findings
    against a half-deleted copy, and the space deleted."""
    settings, client = private
    audit = _cli(settings, "audit", "--quiet")
    tokens = lambda: list(client.scan_iter(match="lf:audit:*:replaying:*", count=1000))  # noqa: E731
    _when(lambda: bool(tokens()), audit, "leasing its scratch space")
    client.delete(*tokens())
    _, err = _ended(audit)
    assert audit.returncode == 3, (audit.returncode, err)
    assert err.count("\n") == 1 and "lost its lease while the audit ran" in err, err
    _group_ends(audit.pid)
    assert _scratch_spaces(client) == {}
