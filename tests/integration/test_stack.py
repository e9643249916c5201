"""The local stack's housekeeping against the shared broker and Redis (external mode: this file
never starts or stops a broker): topic creation, the round trip, ``stack status --json``, and
the guards that keep ``stack up`` / ``stack down`` away from processes ledgerflow did not start.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError, StackError
from ledgerflow.kafka.admin import ensure_topics, partition_counts, round_trip
from ledgerflow.stack import kafka as kafka_stack
from ledgerflow.stack import manage, processes, rediscluster
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import Managed, read_pid_file, record, stop, wait_bindable
from ledgerflow.topics import POLICY_RULES, TopicSpec, all_topics
from tests.support.privatestack import free_port_pair, free_port_run
from tests.support.testtopics import delete_topics

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def created(stack: Settings) -> Iterator[tuple[Settings, list[str], list[str]]]:
    """A fresh topic prefix; ``ensure_topics`` called twice. Yields (settings, first, second)."""
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    first = asyncio.run(ensure_topics(settings))
    second = asyncio.run(ensure_topics(settings))
    yield settings, first, second
    mine = [settings.topic(s.base) for s in all_topics()]
    asyncio.run(delete_topics(settings.kafka_bootstrap, mine))


def test_ensure_topics_creates_every_topic_and_a_second_call_creates_nothing(
    created: tuple[Settings, list[str], list[str]],
) -> None:
    settings, first, second = created
    assert sorted(first) == sorted(settings.topic(s.base) for s in all_topics())
    assert second == []


def test_topics_have_the_partition_counts_declared_in_topics_py(
    created: tuple[Settings, list[str], list[str]],
) -> None:
    settings, _, _ = created
    wanted = {settings.topic(s.base): s.partitions for s in all_topics()}
    assert asyncio.run(partition_counts(settings, list(wanted))) == wanted


async def _topic_configs(settings: Settings, names: list[str]) -> dict[str, dict[str, str]]:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        responses = await admin.describe_configs(
            [
                ConfigResource(ConfigResourceType.TOPIC, n, {"cleanup.policy": None, "retention.ms": None})
                for n in names
            ]
        )
    finally:
        await admin.close()
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            assert resource["error_code"] == 0, resource
            configs[resource["resource_name"]] = {
                e["config_names"]: e["config_value"] for e in resource["config_entries"]
            }
    return configs


def test_every_topic_keeps_records_forever_policy_rules_included(
    created: tuple[Settings, list[str], list[str]],
) -> None:
    """policy.rules too: no compaction may delete a pack version a decision names."""
    settings, _, _ = created
    names = [settings.topic(s.base) for s in all_topics()]
    configs = asyncio.run(_topic_configs(settings, names))
    assert settings.topic(POLICY_RULES) in configs
    for name in names:
        assert configs[name] == {"cleanup.policy": "delete", "retention.ms": "-1"}, name


def test_round_trip_produces_a_record_and_reads_it_back(stack: Settings) -> None:
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    try:
        seconds = asyncio.run(round_trip(settings, timeout=30.0))
        assert 0 < seconds < 30
    finally:
        asyncio.run(delete_topics(settings.kafka_bootstrap, [settings.topic("__ledgerflow.health")]))


def test_stack_status_json_names_the_endpoints_and_our_pids(stack: Settings) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGERFLOW_")}
    env |= {"LEDGERFLOW_STATE_DIR": str(stack.state_dir), "PYTHONPATH": str(ROOT)}
    # The same view of the stack as the session: external services by address, a managed
    # stack by its ports (an address would mark it external).
    if stack.kafka_external:
        env["LEDGERFLOW_KAFKA_BOOTSTRAP"] = stack.kafka_bootstrap
    else:
        env["LEDGERFLOW_KAFKA_PORT"] = stack.kafka_bootstrap.rsplit(":", 1)[1]
    if stack.redis_external:
        env["LEDGERFLOW_REDIS_URL"] = stack.redis_url
    else:
        env["LEDGERFLOW_REDIS_PORT"] = str(manage.nodes(stack).redis.port)
    out = subprocess.run(
        [sys.executable, "-m", "ledgerflow.cli", "stack", "status", "--json"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    nodes = manage.nodes(stack)
    assert info["kafka"]["bootstrap"] == stack.kafka_bootstrap
    assert info["kafka"]["version"] == kafka_stack.KAFKA_VERSION
    assert info["kafka"]["managed"] is not stack.kafka_external
    assert info["kafka"]["pid"] == nodes.kafka.process.pid()
    assert info["redis"]["url"] == stack.redis_url
    assert info["redis"]["managed"] is not stack.redis_external
    assert info["redis"]["pid"] == nodes.redis.process.pid()
    assert info["state_dir"] == str(stack.state_dir)
    assert set(info["processes"]) == {"edge", "worker"}


# --- start refuses a port held by someone else; nothing gets started -----------------------


@pytest.fixture
def holder() -> Iterator[socket.socket]:
    """A plain listening socket (not ledgerflow's) on the first port of a free pair."""
    s = socket.socket()
    s.bind(("127.0.0.1", free_port_pair()))
    s.listen(4)
    yield s
    s.close()


def _tripwire(*_: object, **__: object) -> None:
    pytest.fail("start went past the port check: it would have launched a real process")


def test_kafka_start_refuses_a_port_held_by_a_foreign_socket(
    tmp_path: Path,
    holder: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("require_java", "resolve_classpath", "spawn"):
        monkeypatch.setattr(kafka_stack, name, _tripwire)
    port = holder.getsockname()[1]
    node = kafka_stack.KafkaNode(tmp_path, "127.0.0.1", port)
    with pytest.raises(StackError, match=rf"port {port} on 127\.0\.0\.1 \(Kafka\) is taken"):
        kafka_stack.start(node)
    assert not node.dir.exists()  # no config, no storage, no pid file


def test_kafka_start_refuses_a_held_controller_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("require_java", "resolve_classpath", "spawn"):
        monkeypatch.setattr(kafka_stack, name, _tripwire)
    port = free_port_pair()
    with socket.socket() as controller:
        controller.bind(("127.0.0.1", port + 1))
        controller.listen(4)
        node = kafka_stack.KafkaNode(tmp_path, "127.0.0.1", port)
        with pytest.raises(StackError, match=rf"port {port + 1} .*Kafka controller"):
            kafka_stack.start(node)
    assert not node.process.pid_file.exists()


# --- a port nothing listens on but that cannot be bound yet: waited for, then one line ------


def _closing_on(port: int) -> None:
    """Leave a TIME-WAIT on 127.0.0.1:``port`` the way a client retrying a stopped server there
    does when the kernel gives it that port as its own: it connects to itself, then closes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.connect(("127.0.0.1", port))  # TCP simultaneous open: a connection to itself


def test_a_port_in_time_wait_is_waited_for_then_refused_in_one_line() -> None:
    port = free_port_pair()
    _closing_on(port)
    began = time.monotonic()
    with pytest.raises(StackError) as refused:
        wait_bindable("127.0.0.1", port, "Kafka", 0.6)
    assert time.monotonic() - began >= 0.6
    assert str(refused.value) == (
        f"port {port} on 127.0.0.1 (Kafka) is still in use after 0.6 s though nothing listens on it: "
        "a socket is bound there, or a connection on it is closing (TIME-WAIT lasts up to 60 s, e.g. "
        "after a client retrying the stopped server connected to itself); start again in a minute, "
        "or use another port"
    )


def test_a_port_freed_while_waiting_is_taken() -> None:
    port = free_port_pair()
    held = socket.socket()
    held.bind(("127.0.0.1", port))  # bound, not listening: the connect probe sees nothing
    threading.Timer(0.5, held.close).start()
    began = time.monotonic()
    wait_bindable("127.0.0.1", port, "Redis", 10)
    assert 0.4 <= time.monotonic() - began < 5


def test_kafka_and_redis_start_wait_for_a_closing_port_and_launch_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before, the connect probe found the port free, the broker was launched and exited at once
    ("Address already in use" in its log, for up to a minute of restarts)."""
    for module, names in (
        (kafka_stack, ("require_java", "resolve_classpath", "spawn")),
        (redis_stack, ("require_redis_server", "spawn")),
    ):
        for name in names:
            monkeypatch.setattr(module, name, _tripwire)
    monkeypatch.setattr(processes, "BIND_WAIT_S", 0.3)
    port = free_port_pair()
    _closing_on(port)
    kafka = kafka_stack.KafkaNode(tmp_path / "k", "127.0.0.1", port)
    kafka_said = rf"port {port} on 127\.0\.0\.1 \(Kafka\) is still in use after 0\.3 s"
    with pytest.raises(StackError, match=kafka_said):
        kafka_stack.start(kafka)
    assert not kafka.process.pid_file.exists()
    redis = redis_stack.RedisNode(tmp_path / "r", "127.0.0.1", port)
    with pytest.raises(StackError, match=rf"port {port} on 127\.0\.0\.1 \(Redis\) is still in use"):
        redis_stack.start(redis)
    assert not redis.dir.exists()


def test_redis_start_refuses_a_port_held_by_a_foreign_socket(
    tmp_path: Path,
    holder: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("require_redis_server", "spawn"):
        monkeypatch.setattr(redis_stack, name, _tripwire)
    port = holder.getsockname()[1]
    node = redis_stack.RedisNode(tmp_path, "127.0.0.1", port)
    with pytest.raises(StackError, match=rf"port {port} on 127\.0\.0\.1 \(Redis\) is taken"):
        redis_stack.start(node)
    assert not node.dir.exists()


# --- pid files never lead us to a foreign process -------------------------------------------


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process of our own that is not a ledgerflow service."""
    proc = subprocess.Popen(["sleep", "120"])
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _pid_file(tmp_path: Path, pid: int) -> Path:
    """A pid file written for the running process ``pid`` (its start time included)."""
    path = tmp_path / "svc.pid"
    record(path, pid)
    return path


@pytest.fixture
def namesake() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated `sleep` whose command line carries the demo's worker marker ("ledgerflow"),
    as a process given a recycled pid may."""
    proc = subprocess.Popen(["ledgerflow-namesake", "120"], executable=shutil.which("sleep"))
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


@pytest.mark.parametrize(
    "written",
    ["{pid}\n", "{pid} {earlier}\n", "{pid} 0\n"],
    ids=["pid-only-of-an-older-ledgerflow", "recycled-pid", "start-0"],
)
def test_a_pid_file_not_written_for_the_process_now_at_its_pid_names_none(
    tmp_path: Path, namesake: subprocess.Popen[bytes], written: str
) -> None:
    """Same pid, our marker, but no or another start time: the file was written for an earlier
    process at that pid (or by an older ledgerflow, which recorded none: then the markers alone
    let `stack down` signal whatever ran there)."""
    path = _pid_file(tmp_path, namesake.pid)
    assert Managed("worker", path, ("ledgerflow",)).pid() == namesake.pid  # the real record is ours
    found = read_pid_file(path)
    assert found is not None
    path.write_text(written.format(pid=namesake.pid, earlier=found.start - 1))
    proc = Managed("worker", path, ("ledgerflow",))
    assert proc.pid() is None
    pid_only = written == "{pid}\n"
    assert proc.unverified_pid() == (namesake.pid if pid_only else None)  # what `stack down` names
    assert Managed("worker", path, ("kafka.Kafka",)).unverified_pid() is None  # without our marker
    assert stop(proc, timeout=1.0) is False
    time.sleep(0.2)
    assert namesake.poll() is None
    assert path.exists() is pid_only  # kept only while `stack down` has something to say about it


def test_pid_of_a_live_process_without_the_marker_is_none(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    proc = Managed("kafka", _pid_file(tmp_path, sleeper.pid), (f"kafka.Kafka {tmp_path}",))
    assert proc.pid() is None
    assert Managed("kafka", proc.pid_file, ("sleep 120",)).pid() == sleeper.pid  # same file, our marker


def test_stop_never_signals_a_process_whose_command_line_lacks_the_marker(
    tmp_path: Path,
    sleeper: subprocess.Popen,
) -> None:
    proc = Managed("redis", _pid_file(tmp_path, sleeper.pid), ("redis-server 127.0.0.1:1",))
    assert stop(proc, timeout=1.0) is False
    time.sleep(0.2)
    assert sleeper.poll() is None  # still running
    assert not proc.pid_file.exists()  # the stale pid file is cleaned up


def test_pid_of_an_exited_or_zombie_process_is_none(tmp_path: Path, sleeper: subprocess.Popen) -> None:
    proc = Managed("x", _pid_file(tmp_path, sleeper.pid), ("sleep 120",))
    os.kill(sleeper.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while proc.pid() is not None and time.monotonic() < deadline:  # a zombie until reaped
        time.sleep(0.05)
    assert proc.pid() is None
    sleeper.wait()
    assert proc.pid() is None


@pytest.mark.parametrize(
    "content", [None, "", "not-a-pid\n", "1 2 3\n", "\x00\xff", "-1 5\n", "1\n", "9" * 5000]
)
def test_pid_of_a_missing_or_garbled_pid_file_is_none(tmp_path: Path, content: str | None) -> None:
    path = tmp_path / "svc.pid"
    if content is not None:
        path.write_text(content)
    proc = Managed("x", path, ("anything",))
    assert proc.pid() is None and proc.unverified_pid() is None
    assert stop(proc, timeout=1.0) is False


def test_start_returns_our_already_running_process_instead_of_starting_another(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("require_java", "resolve_classpath", "spawn"):
        monkeypatch.setattr(kafka_stack, name, _tripwire)
    node = kafka_stack.KafkaNode(tmp_path, "127.0.0.1", free_port_pair())
    # A stand-in whose command line carries the node's marker, as the real broker's does.
    ours = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(120)",
            f"{kafka_stack.JAVA_MAIN} {node.dir}/server.properties",
        ]
    )
    try:
        node.dir.mkdir(parents=True)
        record(node.process.pid_file, ours.pid)
        assert kafka_stack.start(node) == ours.pid
        assert stop(node.process, timeout=5.0) is True
        assert ours.wait(timeout=5) is not None
    finally:
        if ours.poll() is None:
            ours.kill()
        ours.wait()


def test_ensure_topics_reports_a_topic_the_broker_refused_instead_of_waiting_for_it(stack: Settings) -> None:
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    bogus = TopicSpec("refused", 1, {"cleanup.policy": "shred"})
    with pytest.raises(InfrastructureError, match=rf"refused to create {settings.topic('refused')} \("):
        asyncio.run(ensure_topics(settings, (bogus,)))
    assert asyncio.run(ensure_topics(settings, (TopicSpec("accepted", 1),))) == [settings.topic("accepted")]
    asyncio.run(delete_topics(settings.kafka_bootstrap, [settings.topic("accepted")]))


def test_a_single_node_running_beside_a_stopped_clusters_directories_is_what_the_state_dir_has(
    tmp_path: Path,
) -> None:
    """`stack status`, `down` and `demo` take the layout from here when --brokers is not given:
    the stale kafka-1 … kafka-3 of an earlier cluster made them describe that stopped cluster
    (kafka pid null) while the single node ran."""
    settings = Settings(state_dir=tmp_path, kafka_bootstrap=f"127.0.0.1:{free_port_pair()}")
    for i in (1, 2, 3):
        (tmp_path / f"kafka-{i}").mkdir()
    assert manage.cluster_size(settings) == 3  # nothing runs: as last started
    single = _stand_in(tmp_path / "kafka")
    cluster_node = None
    try:
        assert manage.cluster_size(settings) == 1
        assert manage.nodes(settings).kafka.process.pid() == single.pid
        cluster_node = _stand_in(tmp_path / "kafka-2")
        assert manage.cluster_size(settings) == 3  # a cluster node runs too: the cluster's, as before
    finally:
        for proc in (single, cluster_node):
            if proc is not None:
                proc.kill()
                proc.wait()


def _stand_in(node_dir: Path) -> subprocess.Popen[bytes]:
    """A process carrying the broker's marker for ``node_dir``, recorded in its pid file."""
    proc = subprocess.Popen(
        [f"{kafka_stack.JAVA_MAIN} {node_dir}/server.properties", "120"], executable=shutil.which("sleep")
    )
    node_dir.mkdir(exist_ok=True)
    record(node_dir / "kafka.pid", proc.pid)
    return proc


def test_clearing_a_stopped_clusters_state_removes_a_linked_directory_but_not_its_target(
    tmp_path: Path,
) -> None:
    state, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    (state / "kafka-1" / "data").mkdir(parents=True)
    (elsewhere / "data").mkdir(parents=True)
    (elsewhere / "data" / "keep").write_text("not the stack's\n")
    (state / "kafka-2").symlink_to(elsewhere, target_is_directory=True)
    (state / "kafka-cluster-id").write_text("AAAAAAAAAAAAAAAAAAAAAA\n")
    said: list[str] = []
    kafka_stack.clear_foreign(kafka_stack.cluster(state, "127.0.0.1", free_port_pair(), 1), said.append)
    assert sorted(p.name for p in state.iterdir()) == []
    assert (elsewhere / "data" / "keep").read_text() == "not the stack's\n"
    assert said == [
        f"kafka: removed kafka-1, kafka-2 from {state}: a stopped cluster's state, "
        "not of the 1-node Kafka starting now"
    ]
    kafka_stack.clear_foreign(kafka_stack.cluster(state, "127.0.0.1", free_port_pair(), 1), said.append)
    assert len(said) == 1  # nothing left to remove: nothing said


REDIS_SIX = [f"redis-{i}" for i in range(1, rediscluster.NODE_COUNT + 1)]


def _redis_stand_in(node_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """A process titled as redis-server titles itself for ``port``, recorded in ``node_dir``'s pid file."""
    proc = subprocess.Popen([f"redis-server 127.0.0.1:{port}", "120"], executable=shutil.which("sleep"))
    node_dir.mkdir(exist_ok=True)
    record(node_dir / "redis.pid", proc.pid)
    return proc


def test_a_single_redis_running_beside_a_stopped_clusters_directories_is_what_the_state_dir_has(
    tmp_path: Path,
) -> None:
    """`stack up`, `status` and `down` take the Redis layout from here without --[no-]redis-cluster:
    the stale redis-1 … redis-6 of an earlier `stack up --redis-cluster` made them take the state
    dir for a cluster's (and `up` start one) while the single Redis ran."""
    # The layout read from redis-1 … redis-6 is a cluster's at port … port + 5, whose bus ports must
    # fit too: a free port above 55,530 was refused before the test began (a CI run drew 56753).
    port = free_port_run(rediscluster.NODE_COUNT, highest=rediscluster.MAX_PORT, also=rediscluster.BUS_OFFSET)
    settings = Settings(
        state_dir=tmp_path,
        kafka_bootstrap=f"127.0.0.1:{free_port_pair()}",
        redis_url=f"redis://127.0.0.1:{port}/0",
    )
    for name in REDIS_SIX:
        (tmp_path / name).mkdir()
    assert len(manage.nodes(settings).redis_cluster) == 6  # nothing runs: as last started
    single = _redis_stand_in(tmp_path / "redis", port)
    cluster_node = None
    try:
        n = manage.nodes(settings)
        assert n.redis_cluster == () and n.redis.process.pid() == single.pid
        cluster_node = _redis_stand_in(tmp_path / "redis-2", port + 1)
        assert len(manage.nodes(settings).redis_cluster) == 6  # a cluster node runs too: the cluster's
    finally:
        for proc in (single, cluster_node):
            if proc is not None:
                proc.kill()
                proc.wait()


def test_clearing_a_stopped_redis_clusters_state_removes_a_linked_directory_but_not_its_target(
    tmp_path: Path,
) -> None:
    state, elsewhere = tmp_path / "state", tmp_path / "elsewhere"
    (state / "redis-1").mkdir(parents=True)
    (state / "redis-1" / "nodes.conf").write_text("a stopped cluster's node\n")
    (state / "redis").mkdir()
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("not the stack's\n")
    (state / "redis-2").symlink_to(elsewhere, target_is_directory=True)
    said: list[str] = []
    rediscluster.clear_foreign(state, False, said.append)
    assert sorted(p.name for p in state.iterdir()) == ["redis"]
    assert (elsewhere / "keep").read_text() == "not the stack's\n"
    assert said == [
        f"redis: removed redis-1, redis-2 from {state}: a stopped Redis Cluster's state, "
        "not of the single Redis starting now"
    ]
    rediscluster.clear_foreign(state, False, said.append)
    assert len(said) == 1  # nothing left to remove: nothing said


def test_clearing_refuses_while_a_redis_of_the_other_layout_runs_and_keeps_its_state(tmp_path: Path) -> None:
    for name in REDIS_SIX:
        (tmp_path / name).mkdir()
    node = _redis_stand_in(tmp_path / "redis-2", free_port_pair())  # started on another port than now
    try:
        with pytest.raises(StackError) as refused:
            rediscluster.clear_foreign(tmp_path, False, print)
        assert str(refused.value) == (
            f"Redis redis-2 of {tmp_path} run, another layout than the single Redis asked for: "
            "`ledgerflow stack down` first (same state dir), then `stack up`"
        )
        assert all((tmp_path / name).is_dir() for name in REDIS_SIX)
    finally:
        node.kill()
        node.wait()
    single = _redis_stand_in(tmp_path / "redis", free_port_pair())
    try:
        with pytest.raises(StackError, match=r"^Redis redis of .* than the Redis Cluster asked for: "):
            rediscluster.clear_foreign(tmp_path, True, print)
    finally:
        single.kill()
        single.wait()
    rediscluster.clear_foreign(tmp_path, True, print)  # its own nodes: nothing to remove
    assert all((tmp_path / name).is_dir() for name in REDIS_SIX)
