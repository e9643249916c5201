"""``ledgerflow stack`` run as an operator runs it, on a private state dir and free ports (never
the shared dev stack): pid files naming processes that are not ours, Kafka and Redis state of
another layout, and port and metrics settings refused before anything starts."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ledgerflow.config import Settings
from ledgerflow.netutil import free_port
from ledgerflow.stack.kafka import JAVA_MAIN
from ledgerflow.stack.processes import port_in_use, record
from tests.integration.clikit import Ran, run_cli
from tests.support.privatestack import free_port_pair

USAGE, OPERATIONAL = 2, 1
SHARED = ("LEDGERFLOW_KAFKA_BOOTSTRAP", "LEDGERFLOW_REDIS_URL")  # dropped: this state dir's own stack

Stack = Callable[..., Ran]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def ports() -> dict[str, str]:
    return {
        "LEDGERFLOW_KAFKA_PORT": str(free_port_pair()),
        "LEDGERFLOW_REDIS_PORT": str(free_port()),
        "LEDGERFLOW_WORKER_METRICS": "off",
    }


@pytest.fixture
def stack(state: Path, ports: dict[str, str]) -> Iterator[Stack]:
    """``ledgerflow stack ARGS`` on the private state dir; ``stack down`` at the end, whatever ran."""
    settings = Settings(state_dir=state, http=f"127.0.0.1:{free_port()}")

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> Ran:
        return run_cli(settings, "stack", *args, env=ports | (env or {}), drop=SHARED, timeout=timeout)

    yield run
    run("down", timeout=120)


@pytest.fixture
def namesakes() -> Iterator[Callable[[str], subprocess.Popen[bytes]]]:
    """Unrelated `sleep`s whose command line starts with the given text (a service's marker), as a
    process given a recycled pid may; killed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv0: str) -> subprocess.Popen[bytes]:
        started.append(subprocess.Popen([argv0, "300"], executable=shutil.which("sleep")))
        return started[-1]

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def test_pid_files_of_processes_that_are_not_ours_are_neither_reported_nor_signalled(
    state: Path, stack: Stack, namesakes: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    worker = namesakes("ledgerflow-namesake")  # the demo's worker marker is "ledgerflow"
    broker = namesakes(f"{JAVA_MAIN} {state / 'kafka'}/server.properties")  # the broker's marker
    run = state / "run"
    run.mkdir(parents=True)
    (run / "worker.pid").write_text(f"{worker.pid}\n")  # an older ledgerflow's file: no start time
    (run / "edge.pid").write_text("garbage\n")
    (state / "kafka").mkdir()
    record(state / "kafka" / "kafka.pid", broker.pid)
    written = (state / "kafka" / "kafka.pid").read_text().split()
    (state / "kafka" / "kafka.pid").write_text(f"{broker.pid} {int(written[1]) - 1}\n")  # a recycled pid
    init_start = Path("/proc/1/stat").read_text().rsplit(")", 1)[1].split()[19]
    (state / "redis").mkdir()
    (state / "redis" / "redis.pid").write_text(f"1 {int(init_start) + 7}\n")  # init: alive, not ours

    status = stack("status", "--json")
    assert status.code == 0, status.err
    info = json.loads(status.out)
    assert info["processes"] == {"edge": None, "worker": None}
    assert (info["kafka"]["pid"], info["redis"]["pid"]) == (None, None)
    down = stack("down")
    assert down.code == 0 and down.err_lines == [
        f"worker: {run / 'worker.pid'} names pid {worker.pid} without a start time (an older ledgerflow "
        f"wrote it), so it is not signalled: if it is ours, stop it by hand (kill {worker.pid})",
        "nothing of ours was running",
    ]
    time.sleep(0.3)
    assert worker.poll() is None and broker.poll() is None  # neither was signalled


def test_a_stopped_clusters_directories_are_removed_before_a_single_node_starts(
    state: Path, stack: Stack, ports: dict[str, str]
) -> None:
    """Left by an earlier `stack up --brokers 3`: they made the next `status` describe a stopped
    cluster instead of the single node running, and `stack up` without --brokers start 3."""
    for i in (1, 2, 3):
        (state / f"kafka-{i}" / "data").mkdir(parents=True)
        (state / f"kafka-{i}" / "server.properties").write_text(f"node.id={i}\n")
    (state / "kafka-cluster-id").write_text("AAAAAAAAAAAAAAAAAAAAAA\n")

    up = stack("up", "--brokers", "1", "--json", timeout=240)
    assert up.code == 0, up.err
    removed = [line for line in up.err_lines if line.startswith("kafka: removed")]
    assert removed == [
        f"kafka: removed kafka-1, kafka-2, kafka-3 from {state}: a stopped cluster's state, "
        "not of the 1-node Kafka starting now"
    ]
    assert sorted(p.name for p in state.iterdir() if p.name.startswith("kafka")) == ["kafka"]
    status = stack("status", "--json")
    assert status.code == 0, status.err
    kafka = json.loads(status.out)["kafka"]
    assert kafka["bootstrap"] == f"127.0.0.1:{ports['LEDGERFLOW_KAFKA_PORT']}"
    assert kafka["pid"] is not None and [n["node_id"] for n in kafka["nodes"]] == [1]
    assert kafka["nodes"][0]["log"] == str(state / "kafka" / "kafka.log")
    again = stack("up", timeout=240)  # as last started: the single node, already running
    assert again.code == 0, again.err
    assert not any(line.startswith("kafka: removed") for line in again.err_lines)
    assert "starting 1 KRaft node(s)" in again.err


def test_up_refuses_while_a_node_of_another_layout_runs_and_keeps_its_state(
    state: Path, stack: Stack, ports: dict[str, str], namesakes: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    for i in (1, 2, 3):
        (state / f"kafka-{i}").mkdir(parents=True)
    node = namesakes(f"{JAVA_MAIN} {state / 'kafka-2'}/server.properties")
    record(state / "kafka-2" / "kafka.pid", node.pid)

    ran = stack("up", "--brokers", "1")
    assert ran.code == OPERATIONAL
    assert ran.one_line() == (
        f"ledgerflow: Kafka node(s) kafka-2 of {state} run, another layout than the 1 node(s) asked for: "
        "`ledgerflow stack down` first (same state dir), then `stack up`"
    )
    assert all((state / f"kafka-{i}").is_dir() for i in (1, 2, 3))
    assert not port_in_use("127.0.0.1", int(ports["LEDGERFLOW_REDIS_PORT"]))  # nothing started
    assert node.poll() is None


REDIS_SIX = [f"redis-{i}" for i in range(1, 7)]


def test_a_stopped_redis_clusters_directories_are_removed_before_one_redis_starts(
    state: Path, stack: Stack, ports: dict[str, str]
) -> None:
    """Left by an earlier `stack up --redis-cluster`: they made every later `stack up` start the
    cluster again, `status` describe it and the default LEDGERFLOW_REDIS_URL a cluster URL."""
    for name in REDIS_SIX:
        (state / name).mkdir(parents=True)
        (state / name / "nodes.conf").write_text("a stopped cluster's node\n")

    up = stack("up", "--no-redis-cluster", "--json", timeout=240)
    assert up.code == 0, up.err
    removed = [line for line in up.err_lines if line.startswith("redis: removed")]
    assert removed == [
        f"redis: removed {', '.join(REDIS_SIX)} from {state}: a stopped Redis Cluster's state, "
        "not of the single Redis starting now"
    ]
    assert sorted(p.name for p in state.iterdir() if p.name.startswith("redis")) == ["redis"]
    url = f"redis://127.0.0.1:{ports['LEDGERFLOW_REDIS_PORT']}/0"
    assert json.loads(up.out)["redis"]["url"] == url  # not the cluster URL the leftovers implied
    status = stack("status", "--json")
    assert status.code == 0, status.err
    redis = json.loads(status.out)["redis"]
    assert (redis["url"], redis["nodes"], redis["cluster"]) == (url, [], None)
    assert redis["pid"] is not None
    again = stack("up", timeout=240)  # as last started: the single Redis, already running
    assert again.code == 0, again.err
    assert not any(line.startswith("redis: removed") for line in again.err_lines)
    assert f"redis: starting on 127.0.0.1:{ports['LEDGERFLOW_REDIS_PORT']}" in again.err


def test_up_refuses_one_redis_while_a_cluster_node_runs_and_keeps_its_state(
    state: Path, stack: Stack, ports: dict[str, str], namesakes: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    for name in REDIS_SIX:
        (state / name).mkdir(parents=True)
    node = namesakes(f"redis-server 127.0.0.1:{int(ports['LEDGERFLOW_REDIS_PORT']) + 1}")
    record(state / "redis-2" / "redis.pid", node.pid)

    ran = stack("up", "--no-redis-cluster")
    assert ran.code == OPERATIONAL
    assert ran.one_line() == (
        f"ledgerflow: Redis redis-2 of {state} run, another layout than the single Redis asked for: "
        "`ledgerflow stack down` first (same state dir), then `stack up`"
    )
    assert all((state / name).is_dir() for name in REDIS_SIX)
    assert not port_in_use("127.0.0.1", int(ports["LEDGERFLOW_REDIS_PORT"]))  # nothing started
    assert node.poll() is None


@pytest.mark.parametrize(
    ("port", "args", "last", "most"),
    [
        ("65535", (), 65536, 65534),
        ("65531", ("--brokers", "3"), 65536, 65530),
        ("65535", ("--brokers", "2"), 65538, 65532),
    ],
)
def test_a_kafka_port_whose_controller_would_pass_65535_is_refused_before_anything_starts(
    state: Path, stack: Stack, ports: dict[str, str], port: str, args: tuple[str, ...], last: int, most: int
) -> None:
    ran = stack("up", *args, env={"LEDGERFLOW_KAFKA_PORT": port})
    assert ran.code == USAGE, ran.err
    assert ran.one_line().startswith(f"ledgerflow: LEDGERFLOW_KAFKA_PORT={port}: ")
    assert f"{port}-{last}, past 65535" in ran.err and f"to {most} or less" in ran.err
    assert not port_in_use("127.0.0.1", int(ports["LEDGERFLOW_REDIS_PORT"]))  # Redis was not started
    assert not (state / "redis").exists()


def test_status_refuses_65535_too(stack: Stack) -> None:
    ran = stack("status", env={"LEDGERFLOW_KAFKA_PORT": "65535"})
    assert ran.code == USAGE
    assert ran.one_line().startswith(
        "ledgerflow: LEDGERFLOW_KAFKA_PORT=65535: the Kafka node and its controller"
    )


def test_the_highest_kafka_port_that_fits_is_accepted(stack: Stack) -> None:
    ran = stack("status", "--json", env={"LEDGERFLOW_KAFKA_PORT": "65534"})
    assert ran.code == 0, ran.err
    assert '"bootstrap": "127.0.0.1:65534"' in ran.out


@pytest.mark.parametrize("port", ["abc", "0", "-1", "65536", "²", "1e3", "19092x"])
def test_a_kafka_port_that_is_no_port_is_refused_by_up_before_anything_starts(
    state: Path, stack: Stack, ports: dict[str, str], port: str
) -> None:
    ran = stack("up", env={"LEDGERFLOW_KAFKA_PORT": port})
    assert ran.code == USAGE
    assert ran.one_line().startswith(f"ledgerflow: LEDGERFLOW_KAFKA_PORT={port!r} is not a port number")
    assert not port_in_use("127.0.0.1", int(ports["LEDGERFLOW_REDIS_PORT"]))


@pytest.mark.parametrize(
    "value", ["garbage", "127.0.0.1", "127.0.0.1:", ":8701", "127.0.0.1:99999", "127.0.0.1:0", "h:²"]
)
@pytest.mark.parametrize("verb", [("stack", "status"), ("worker", "--processes", "2")])
def test_a_bad_worker_metrics_address_is_one_line_exit_2_before_any_connection(
    state: Path, value: str, verb: tuple[str, ...]
) -> None:
    nowhere = f"127.0.0.1:{free_port()}"
    ran = run_cli(
        Settings(kafka_bootstrap=nowhere, redis_url=f"redis://{nowhere}/0", state_dir=state),
        *verb,
        env={"LEDGERFLOW_WORKER_METRICS": value, "LEDGERFLOW_HTTP": f"127.0.0.1:{free_port()}"},
        timeout=60,
    )
    assert ran.code == USAGE, ran.err
    assert ran.one_line() == (
        f"ledgerflow: LEDGERFLOW_WORKER_METRICS={value!r} is not HOST:PORT (port 1-65535) or off; "
        "e.g. 127.0.0.1:8701"
    )


@pytest.mark.parametrize("value", ["off", "OFF", "none", ""])
def test_worker_metrics_off_is_accepted(stack: Stack, value: str) -> None:
    ran = stack("status", "--json", env={"LEDGERFLOW_WORKER_METRICS": value})
    assert ran.code == 0, ran.err
    assert '"worker_metrics": null' in ran.out
