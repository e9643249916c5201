"""A loopback Redis server from Debian's ``redis-server``, kept in memory only, never evicting."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from ledgerflow.errors import PrerequisiteMissing, StackError
from ledgerflow.stack.node import ServiceNode
from ledgerflow.stack.processes import Managed, port_in_use, spawn, wait_bindable, wait_for_port

START_TIMEOUT_S = 20.0


@dataclass(frozen=True, slots=True)
class RedisNode(ServiceNode):
    """One Redis server; ``name`` is its directory and process name (``redis-N`` in a cluster)."""

    SERVICE: ClassVar[str] = "redis"
    name: str = "redis"

    @property
    def dir(self) -> Path:
        return self.state_dir / self.name

    @property
    def process(self) -> Managed:
        return Managed(
            # redis-server rewrites its process title to "redis-server HOST:PORT".
            self.name,
            self.dir / "redis.pid",
            (str(self.dir), f"{self.host}:{self.port}"),
        )


def require_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        raise PrerequisiteMissing(
            "redis-server was not found on PATH. Install Debian's package: "
            "`apt-get install -y redis-server` (`make test` and `make demo` do this for you "
            "when run as root)."
        )
    return path


def start(node: RedisNode, extra: Sequence[str] = ()) -> int:
    """Start the server (``extra``: more ``redis-server`` options) unless ours runs; its pid."""
    existing = node.process.pid()
    if existing is not None:
        return existing
    if port_in_use(node.host, node.port):
        raise StackError(
            f"port {node.port} on {node.host} (Redis) is taken by a process ledgerflow did not start: "
            "stop it, set LEDGERFLOW_REDIS_PORT to a free port for the Redis `stack up` starts, or set "
            f"LEDGERFLOW_REDIS_URL=redis://{node.host}:{node.port}/0 to use the one running there"
        )
    wait_bindable(node.host, node.port, "Redis")
    server = require_redis_server()
    node.dir.mkdir(parents=True, exist_ok=True)
    pid = spawn(
        node.process,
        [
            server,
            "--bind",
            node.host,
            "--port",
            str(node.port),
            "--save",
            "",
            "--appendonly",
            "no",
            # ledgerflow needs a Redis that never evicts (ledgerflow/redispolicy.py): said explicitly,
            # so the stack's Redis (and every node of its cluster) passes the edge's start-up check
            # whatever the package's default configuration says
            "--maxmemory-policy",
            "noeviction",
            "--dir",
            str(node.dir),
            "--protected-mode",
            "yes",
            "--daemonize",
            "no",
            *extra,
        ],
        node.log_file,
    )
    wait_for_port(node.host, node.port, START_TIMEOUT_S, node.process, node.log_file, pid)
    return pid
