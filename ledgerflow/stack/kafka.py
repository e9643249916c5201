"""Apache Kafka (KRaft) from Maven Central artifacts: one node, or a local cluster of several.

Every node runs combined roles (broker + controller), so a cluster of three is also a
controller quorum of three that survives the loss of any one node. Node *i* (1-based) of a
cluster listens on ``port + 2(i - 1)`` and its controller on the port after that, so a
three-node cluster on 19092 takes 19092-19097; a single node keeps ``port`` / ``port + 1``.

Start-up sequence:
1. Resolve the broker's runtime classpath with Maven from ``kafka-runtime.pom.xml``
   (cached under ``~/.cache/ledgerflow`` so a second start is offline and fast).
2. Write ``server.properties`` and a log4j2 configuration into the state directory.
3. Format the storage with ``kafka.tools.StorageTool`` (first start only).
4. Start ``kafka.Kafka`` detached, with a pid file, and wait for its port.

A state directory holds the Kafka of one layout at a time that counts: the single node's
``kafka/``, or a cluster's ``kafka-1/`` … ``kafka-N/`` (with ``kafka-cluster-id``). Cluster
directories of another size are state a different cluster left (its nodes were formatted for
other voters): ``clear_foreign`` removes them before a start, once they are stopped.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

from ledgerflow.errors import PrerequisiteMissing, StackError, ValidationError
from ledgerflow.stack.node import ServiceNode
from ledgerflow.stack.processes import (
    Managed,
    port_in_use,
    remove_state,
    spawn,
    subdirectories,
    tail,
    wait_bindable,
    wait_for_port,
)
from ledgerflow.topics import replication

KAFKA_VERSION = "4.3.1"
JAVA_MAIN = "kafka.Kafka"
START_TIMEOUT_S = 90.0
SINGLE_HEAP = "1g"
CLUSTER_HEAP = "512m"
"""Per broker in a cluster: three brokers, Redis, workers and edges share a 2-core/24 GiB box."""
MAX_PORT = 65_535
CLUSTER_ID_FILE = "kafka-cluster-id"
_CLUSTER_DIR = re.compile(r"kafka-([1-9][0-9]{0,5})")


@dataclass(frozen=True, slots=True)
class KafkaNode(ServiceNode):
    """One KRaft node: ``node_id`` of a cluster of ``brokers`` nodes (1 = the single-node stack)."""

    SERVICE: ClassVar[str] = "kafka"
    node_id: int = 1
    brokers: int = 1

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def base_port(self) -> int:
        return self.port - 2 * (self.node_id - 1)

    @property
    def voters(self) -> str:
        """``controller.quorum.voters``: every node of the cluster, by id and controller port."""
        return ",".join(
            f"{i}@{self.host}:{self.base_port + 2 * (i - 1) + 1}" for i in range(1, self.brokers + 1)
        )

    @property
    def dir(self) -> Path:
        return self.state_dir / ("kafka" if self.brokers == 1 else f"kafka-{self.node_id}")

    @property
    def process(self) -> Managed:
        return node_process(self.dir)


def node_process(directory: Path) -> Managed:
    """The broker whose files are in ``directory``, named after it (``kafka`` or ``kafka-N``)."""
    # The trailing slash keeps "…/kafka" from matching a cluster node's "…/kafka-1".
    return Managed(directory.name, directory / "kafka.pid", (f"{JAVA_MAIN} {directory}/",))


def cluster(state_dir: Path, host: str, port: int, brokers: int) -> tuple[KafkaNode, ...]:
    """The nodes of a local cluster whose first broker listens on ``port``."""
    if brokers < 1:
        raise StackError(f"a Kafka cluster needs at least one broker, not {brokers}")
    return tuple(KafkaNode(state_dir, host, port + 2 * i, i + 1, brokers) for i in range(brokers))


def port_problem(port: int, brokers: int) -> str | None:
    """Why ``brokers`` local nodes cannot start on ``port`` (None: they can): the last node's
    controller listens on ``port + 2(brokers - 1) + 1``, which must be a port."""
    last = port + 2 * (brokers - 1) + 1
    if last <= MAX_PORT:
        return None
    what = (
        f"{brokers} Kafka nodes and their controllers" if brokers > 1 else "the Kafka node and its controller"
    )
    return (
        f"LEDGERFLOW_KAFKA_PORT={port}: {what} would listen on {port}-{last}, past {MAX_PORT} (a controller "
        f"takes the port after its broker's): set LEDGERFLOW_KAFKA_PORT to {MAX_PORT - (last - port)} or less"
    )


def check_port_range(port: int, brokers: int) -> None:
    problem = port_problem(port, brokers)
    if problem is not None:
        raise ValidationError(problem)


def cluster_dirs(names: Iterable[str]) -> list[str]:
    """The ``kafka-N`` names among ``names`` (a state directory's entries), by N."""
    found = [(int(m.group(1)), name) for name in names if (m := _CLUSTER_DIR.fullmatch(name))]
    return [name for _, name in sorted(found)]


def cluster_size(names: Iterable[str]) -> int:
    """The size of the cluster whose directories are among ``names``: N when ``kafka-1`` …
    ``kafka-N`` (N > 1) are there, else 1 (the single node)."""
    present = set(cluster_dirs(names))
    count = 0
    while f"kafka-{count + 1}" in present:
        count += 1
    return count if count > 1 else 1


def foreign_dirs(names: Iterable[str], brokers: int) -> list[str]:
    """The ``kafka-N`` directories among ``names`` that are no state of a ``brokers``-node
    layout: none when they are exactly ``kafka-1`` … ``kafka-<brokers>`` of a cluster, else
    all (a node formatted for another cluster size would start with the wrong voters)."""
    found = cluster_dirs(names)
    wanted = [f"kafka-{i}" for i in range(1, brokers + 1)] if brokers > 1 else []
    return [] if found == wanted else found


def clear_foreign(nodes: tuple[KafkaNode, ...], say: Callable[[str], None]) -> None:
    """Before starting ``nodes``: remove the stopped state of another layout (one line says so);
    StackError if a node of another layout runs (it holds the same ports)."""
    state_dir, brokers = nodes[0].state_dir, nodes[0].brokers
    names = subdirectories(state_dir)
    stale = foreign_dirs(names, brokers)
    others = [state_dir / name for name in stale] + ([state_dir / "kafka"] if brokers > 1 else [])
    running = [d.name for d in others if node_process(d).pid() is not None]
    if running:
        raise StackError(
            f"Kafka node(s) {', '.join(running)} of {state_dir} run, another layout than the "
            f"{brokers} node(s) asked for: `ledgerflow stack down` first (same state dir), then `stack up`"
        )
    if not stale:
        return
    remove_state(state_dir, stale)
    (state_dir / CLUSTER_ID_FILE).unlink(missing_ok=True)
    say(
        f"kafka: removed {', '.join(stale)} from {state_dir}: a stopped cluster's state, "
        f"not of the {brokers}-node Kafka starting now"
    )


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ledgerflow" / f"kafka-{KAFKA_VERSION}"


def require_java() -> str:
    java = shutil.which("java")
    if java is None:
        raise PrerequisiteMissing(
            "java was not found on PATH. Kafka 4.3 needs Java 17 or newer: "
            "install it with `apt-get install -y openjdk-17-jre-headless`."
        )
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    major = _java_major(out)
    if major is not None and major < 17:
        raise PrerequisiteMissing(
            f"Kafka 4.3 needs Java 17 or newer; `java -version` says {major}. "
            "Install openjdk-17-jre-headless and put it first on PATH."
        )
    return java


def _java_major(version_text: str) -> int | None:
    """The major version in ``java -version`` output ('"17.0.15"' → 17, '"1.8.0_392"' → 8, '"21"' → 21)."""
    m = re.search(r'version "(\d+)(?:\.(\d+))?', version_text)
    if m is None:
        return None
    first = int(m.group(1))
    return int(m.group(2)) if first == 1 and m.group(2) else first


def resolve_classpath() -> str:
    """The broker classpath, resolved by Maven once and cached outside the work tree."""
    cached = cache_dir() / "classpath.txt"
    if cached.exists():
        classpath = cached.read_text().strip()
        if classpath and all(Path(p).exists() for p in classpath.split(":")):
            return classpath
    mvn = shutil.which("mvn")
    if mvn is None:
        raise PrerequisiteMissing(
            "mvn was not found on PATH. ledgerflow resolves the Kafka runtime from Maven "
            "Central with Maven: install it with `apt-get install -y maven`."
        )
    cached.parent.mkdir(parents=True, exist_ok=True)
    pom = resources.files("ledgerflow.stack") / "kafka-runtime.pom.xml"
    with resources.as_file(pom) as pom_path:
        shutil.copy(pom_path, cached.parent / "pom.xml")
    result = subprocess.run(
        [
            mvn,
            "-B",
            "-q",
            "-f",
            str(cached.parent / "pom.xml"),
            "dependency:build-classpath",
            f"-Dmdep.outputFile={cached}",
            "-Dmdep.includeScope=runtime",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not cached.exists():
        cached.unlink(missing_ok=True)
        raise StackError(
            f"Maven could not resolve org.apache.kafka:kafka_2.13:{KAFKA_VERSION}:\n"
            f"{(result.stdout + result.stderr)[-3000:]}"
        )
    return cached.read_text().strip()


def new_cluster_id(draw: Callable[[], bytes] = lambda: uuid.uuid4().bytes) -> str:
    """A random KRaft cluster id (22 URL-safe base64 characters). Never one starting with
    "-": the storage tool would read it as an option and refuse to format (1 draw in 64)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(draw()).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _cluster_id(node: KafkaNode) -> str:
    """A fresh id for a single node; for a cluster, one id shared by all its nodes (kept on disk)."""
    if node.brokers == 1:
        return new_cluster_id()
    path = node.state_dir / CLUSTER_ID_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(new_cluster_id() + "\n")
    return path.read_text().strip()


def server_properties(node: KafkaNode) -> dict[str, str]:
    factor, min_isr = replication(node.brokers)
    return {
        "process.roles": "broker,controller",
        "node.id": str(node.node_id),
        "controller.quorum.voters": node.voters,
        "listeners": f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(node.dir / "data"),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "default.replication.factor": str(factor),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(factor),
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": str(factor),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(factor),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "-1",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "num.io.threads": "4",
        "num.network.threads": "2",
    }


def write_config(node: KafkaNode) -> Path:
    node.dir.mkdir(parents=True, exist_ok=True)
    props = server_properties(node)
    path = node.dir / "server.properties"
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
    (node.dir / "log4j2.properties").write_text(
        "status = warn\n"
        "appender.out.type = Console\n"
        "appender.out.name = OUT\n"
        "appender.out.layout.type = PatternLayout\n"
        "appender.out.layout.pattern = [%d] %p %m (%c)%n\n"
        "rootLogger.level = INFO\n"
        "rootLogger.appenderRef.out.ref = OUT\n"
        "logger.kafka.name = kafka\nlogger.kafka.level = WARN\n"
        "logger.apache.name = org.apache.kafka\nlogger.apache.level = WARN\n"
        "logger.started.name = kafka.server.KafkaRaftServer\nlogger.started.level = INFO\n"
        "logger.state.name = state.change.logger\nlogger.state.level = WARN\n"
    )
    return path


def _java_argv(java: str, classpath: str, node: KafkaNode, main: str, *args: str) -> list[str]:
    return [
        java,
        "-Xms256m" if node.brokers == 1 else "-Xms128m",
        f"-Xmx{SINGLE_HEAP if node.brokers == 1 else CLUSTER_HEAP}",
        "-XX:+UseG1GC",
        "-XX:MaxGCPauseMillis=20",
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={node.dir / 'log4j2.properties'}",
        "-cp",
        classpath,
        main,
        *args,
    ]


def format_storage(java: str, classpath: str, node: KafkaNode, config: Path) -> None:
    if (node.dir / "data" / "meta.properties").exists():
        return
    result = subprocess.run(
        _java_argv(
            java,
            classpath,
            node,
            "kafka.tools.StorageTool",
            "format",
            "-t",
            _cluster_id(node),
            "-c",
            str(config),
        ),
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise StackError(f"Formatting Kafka storage failed:\n{(result.stdout + result.stderr)[-3000:]}")


def start(node: KafkaNode) -> int:
    """Start the broker (steps 1-4 above) unless ours already runs; return its pid."""
    existing = node.process.pid()
    if existing is not None:
        return existing
    pid = launch(node)
    wait_for_port(node.host, node.port, START_TIMEOUT_S, node.process, node.log_file, pid)
    return pid


def start_cluster(nodes: tuple[KafkaNode, ...]) -> list[int]:
    """Start every node, then wait for all: a node opens its broker port only once a
    majority of the controller quorum runs, so waiting node by node would never finish."""
    for node in nodes:
        if node.process.pid() is None:
            check_ports(node)
    pids = [launch(node) for node in nodes]
    for node, pid in zip(nodes, pids, strict=True):
        wait_for_port(node.host, node.port, START_TIMEOUT_S, node.process, node.log_file, pid)
    return pids


def check_ports(node: KafkaNode) -> None:
    for port, what in ((node.port, "Kafka"), (node.controller_port, "the Kafka controller")):
        if port_in_use(node.host, port):
            raise StackError(
                f"port {port} on {node.host} ({what}) is taken by a process ledgerflow did not start: "
                "stop it, set LEDGERFLOW_KAFKA_PORT to a free port (it and the next one), or set "
                f"LEDGERFLOW_KAFKA_BOOTSTRAP={node.host}:{node.port} to use a broker running there"
            )


def launch(node: KafkaNode) -> int:
    """Steps 1-4 without the wait: the pid of our running node, or of the one just spawned."""
    existing = node.process.pid()
    if existing is not None:
        return existing
    check_ports(node)
    for port, what in ((node.port, "Kafka"), (node.controller_port, "the Kafka controller")):
        wait_bindable(node.host, port, what)
    java = require_java()  # Step 1.
    classpath = resolve_classpath()
    config = write_config(node)  # Step 2.
    format_storage(java, classpath, node, config)  # Step 3.
    return spawn(  # Step 4.
        node.process,
        _java_argv(java, classpath, node, JAVA_MAIN, str(config)),  # marker: main + config dir
        node.log_file,
    )


def quorum_leader(nodes: tuple[KafkaNode, ...]) -> int | None:
    """The active KRaft controller as our nodes last recorded it (the ``quorum-state`` file of
    the metadata log: the highest leader epoch wins); None if none has recorded a leader."""
    best: tuple[int, int] | None = None
    for node in nodes:
        try:
            state = json.loads((node.dir / "data" / "__cluster_metadata-0" / "quorum-state").read_text())
        except (FileNotFoundError, ValueError):
            continue
        leader, epoch = state.get("leaderId", -1), state.get("leaderEpoch", -1)
        if isinstance(leader, int) and leader >= 0 and (best is None or epoch > best[1]):
            best = (leader, epoch)
    return None if best is None else best[0]


def log_tail(node: KafkaNode) -> str:
    return tail(node.log_file)
