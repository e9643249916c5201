"""A single-node Apache Kafka (KRaft, broker + controller) from Maven Central artifacts.

Start-up sequence:
1. Resolve the broker's runtime classpath with Maven from ``kafka-runtime.pom.xml``
   (cached under ``~/.cache/ledgerflow`` so a second start is offline and fast).
2. Write ``server.properties`` and a log4j2 configuration into the state directory.
3. Format the storage with ``kafka.tools.StorageTool`` (first start only).
4. Start ``kafka.Kafka`` detached, with a pid file, and wait for its port.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

from ledgerflow.errors import PrerequisiteMissing, StackError
from ledgerflow.stack.node import ServiceNode
from ledgerflow.stack.processes import Managed, port_in_use, spawn, tail, wait_for_port

KAFKA_VERSION = "4.3.1"
JAVA_MAIN = "kafka.Kafka"
START_TIMEOUT_S = 90.0


@dataclass(frozen=True, slots=True)
class KafkaNode(ServiceNode):
    SERVICE: ClassVar[str] = "kafka"

    @property
    def controller_port(self) -> int:
        return self.port + 1

    @property
    def process(self) -> Managed:
        return Managed("kafka", self.dir / "kafka.pid", (f"{JAVA_MAIN} {self.dir}",))


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


def _cluster_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def write_config(node: KafkaNode) -> Path:
    node.dir.mkdir(parents=True, exist_ok=True)
    data = node.dir / "data"
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{node.host}:{node.controller_port}",
        "listeners": f"PLAINTEXT://{node.host}:{node.port},CONTROLLER://{node.host}:{node.controller_port}",
        "advertised.listeners": f"PLAINTEXT://{node.host}:{node.port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": str(data),
        "num.partitions": "1",
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "6",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "log.retention.hours": "-1",
        "log.segment.bytes": str(64 * 1024 * 1024),
        "num.io.threads": "4",
        "num.network.threads": "2",
    }
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
        "-Xms256m",
        "-Xmx1g",
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
            java, classpath, node, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(config)
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
    for port, what in ((node.port, "Kafka"), (node.controller_port, "the Kafka controller")):
        if port_in_use(node.host, port):
            raise StackError(
                f"Port {port} on {node.host} ({what}) is taken by a process ledgerflow did not "
                f"start. Stop it, or use another port: LEDGERFLOW_KAFKA_BOOTSTRAP="
                f"{node.host}:<port> with the broker there already running, or a free port pair."
            )
    java = require_java()  # Step 1.
    classpath = resolve_classpath()
    config = write_config(node)  # Step 2.
    format_storage(java, classpath, node, config)  # Step 3.
    pid = spawn(  # Step 4.
        node.process,
        _java_argv(java, classpath, node, JAVA_MAIN, str(config)),  # marker: main + config dir
        node.log_file,
    )
    wait_for_port(node.host, node.port, START_TIMEOUT_S, node.process, node.log_file, pid)
    return pid


def log_tail(node: KafkaNode) -> str:
    return tail(node.log_file)
