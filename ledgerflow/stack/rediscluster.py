"""A local Redis Cluster from Debian's ``redis-server``: three masters with one replica each,
joined by ``redis-cli --cluster create``. Node *i* (1-based) listens on ``port + i - 1`` and
keeps its cluster state (``nodes.conf``) in ``redis-i/``; the data stays in memory only.

The single Redis keeps ``redis/``: both layouts may sit in one state dir, one runs at a time.
``stack up`` starting one Redis removes a stopped cluster's ``redis-N/`` (``clear_foreign``):
left there, they made every later ``stack up``/``status``/``down`` and the default
``LEDGERFLOW_REDIS_URL`` take the state dir for a Redis Cluster's."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import redis as redis_sync

from ledgerflow.errors import PrerequisiteMissing, StackError, ValidationError
from ledgerflow.stack import redis as redis_stack
from ledgerflow.stack.processes import Managed, remove_state, subdirectories

MASTERS = 3
REPLICAS_PER_MASTER = 1
NODE_COUNT = MASTERS * (1 + REPLICAS_PER_MASTER)
NODE_TIMEOUT_MS = 5000
FORM_TIMEOUT_S = 60.0


def cluster_options(node_timeout_ms: int = NODE_TIMEOUT_MS) -> tuple[str, ...]:
    """``redis-server`` flags of a cluster node; a master unreachable for ``node_timeout_ms`` is
    failed over to its replica (a test uses a short one to fail over quickly)."""
    return (
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        "nodes.conf",
        "--cluster-node-timeout",
        str(node_timeout_ms),
    )


@dataclass(frozen=True, slots=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``."""

    node_id: str
    address: str
    role: str
    master_id: str | None
    connected: bool
    slots: int


BUS_OFFSET = 10_000
"""Each node's cluster bus listens this far above its port (fixed by Redis)."""
MAX_PORT = 65_535 - BUS_OFFSET
"""The highest port a cluster node may listen on (Redis refuses to start above it)."""


def nodes(state_dir: Path, host: str, port: int) -> tuple[redis_stack.RedisNode, ...]:
    """The cluster's nodes on ``port`` … ``port + NODE_COUNT - 1``; ValidationError (one line)
    when the last would be above ``MAX_PORT``."""
    if port + NODE_COUNT - 1 > MAX_PORT:
        raise ValidationError(
            f"a Redis Cluster's nodes listen on {port}-{port + NODE_COUNT - 1}, but each node's cluster bus "
            f"is {BUS_OFFSET} above its port, so the last may be at most {MAX_PORT}: set "
            f"LEDGERFLOW_REDIS_PORT to {MAX_PORT - NODE_COUNT + 1} or less"
        )
    return tuple(
        redis_stack.RedisNode(state_dir, host, port + i, f"redis-{i + 1}") for i in range(NODE_COUNT)
    )


_CLUSTER_DIR = re.compile(r"redis-([1-9][0-9]{0,5})")


def cluster_dirs(names: Iterable[str]) -> list[str]:
    """The ``redis-N`` names among ``names`` (a state directory's entries), by N."""
    found = [(int(m.group(1)), name) for name in names if (m := _CLUSTER_DIR.fullmatch(name))]
    return [name for _, name in sorted(found)]


def foreign_dirs(names: Iterable[str], cluster: bool) -> list[str]:
    """The ``redis-N`` directories among ``names`` that are no state of the layout starting: all
    of them when one Redis starts, those past ``redis-<NODE_COUNT>`` when a cluster does (its own
    nodes' ``nodes.conf`` is how they rejoin the same cluster)."""
    found = cluster_dirs(names)
    if not cluster:
        return found
    wanted = {f"redis-{i}" for i in range(1, NODE_COUNT + 1)}
    return [name for name in found if name not in wanted]


def dir_process(directory: Path) -> Managed:
    """The Redis whose pid file is in ``directory``, whatever port it was started on (its
    recorded start time names it; redis-server's title always starts with ``redis-server``)."""
    return Managed(directory.name, directory / "redis.pid", ("redis-server ",))


def clear_foreign(state_dir: Path, cluster: bool, say: Callable[[str], None]) -> None:
    """Before a single Redis (``cluster`` False) or a Redis Cluster starts: remove the stopped
    ``redis-N`` state of the other layout (one line says so); StackError if a Redis of the other
    layout runs (it holds the same first port)."""
    names = subdirectories(state_dir)
    stale = foreign_dirs(names, cluster)
    others = [state_dir / name for name in stale] + ([state_dir / "redis"] if cluster else [])
    running = [d.name for d in others if dir_process(d).pid() is not None]
    if running:
        asked = "the Redis Cluster" if cluster else "the single Redis"
        raise StackError(
            f"Redis {', '.join(running)} of {state_dir} run, another layout than {asked} asked for: "
            "`ledgerflow stack down` first (same state dir), then `stack up`"
        )
    if not stale:
        return
    remove_state(state_dir, stale)
    starting = f"the {NODE_COUNT}-node Redis Cluster" if cluster else "the single Redis"
    say(
        f"redis: removed {', '.join(stale)} from {state_dir}: a stopped Redis Cluster's state, "
        f"not of {starting} starting now"
    )


def parse_cluster_nodes(text: str) -> list[ClusterNode]:
    """``CLUSTER NODES`` output: ``id addr flags master ping pong epoch link slot…`` per line."""
    found = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 8:
            continue
        flags = set(fields[2].split(","))
        slots = 0
        for item in fields[8:]:
            if item.startswith("["):  # a slot being migrated, not owned
                continue
            first, _, last = item.partition("-")
            slots += int(last or first) - int(first) + 1
        found.append(
            ClusterNode(
                node_id=fields[0],
                address=fields[1].split("@")[0],
                role="master" if "master" in flags else "replica" if "slave" in flags else "unknown",
                master_id=None if fields[3] == "-" else fields[3],
                connected=fields[7] == "connected" and "fail" not in flags,
                slots=slots,
            )
        )
    return sorted(found, key=lambda n: n.address)


def _command(node: redis_stack.RedisNode, *args: str) -> str:
    """The raw text reply (redis-py would parse ``CLUSTER`` replies into dicts of its own)."""
    pool = redis_sync.ConnectionPool(
        host=node.host, port=node.port, socket_timeout=2, socket_connect_timeout=2, decode_responses=True
    )
    try:
        conn = pool.get_connection()
        try:
            conn.send_command(*args)  # type: ignore[no-untyped-call]
            return str(conn.read_response())
        finally:
            pool.release(conn)
    finally:
        pool.disconnect()


def parse_cluster_info(text: str) -> dict[str, str]:
    return dict(line.strip().split(":", 1) for line in text.splitlines() if ":" in line)


def cluster_info(node: redis_stack.RedisNode) -> dict[str, str]:
    return parse_cluster_info(_command(node, "CLUSTER", "INFO"))


def cluster_nodes(node: redis_stack.RedisNode) -> list[ClusterNode]:
    return parse_cluster_nodes(_command(node, "CLUSTER", "NODES"))


def start(cluster: tuple[redis_stack.RedisNode, ...], node_timeout_ms: int = NODE_TIMEOUT_MS) -> None:
    """Start every node, join them into one cluster unless they already form one, and wait
    until every node reports ``cluster_state:ok``."""
    for node in cluster:
        redis_stack.start(node, cluster_options(node_timeout_ms))
    if int(cluster_info(cluster[0]).get("cluster_known_nodes", "1")) < len(cluster):
        create(cluster)
    wait_until_ok(cluster)


def create(cluster: tuple[redis_stack.RedisNode, ...]) -> None:
    cli = shutil.which("redis-cli")
    if cli is None:
        raise PrerequisiteMissing("redis-cli was not found on PATH: `apt-get install -y redis-tools`.")
    result = subprocess.run(
        [
            cli,
            "--cluster",
            "create",
            *(f"{n.host}:{n.port}" for n in cluster),
            "--cluster-replicas",
            str(REPLICAS_PER_MASTER),
            "--cluster-yes",
        ],
        capture_output=True,
        text=True,
        timeout=FORM_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise StackError(f"redis-cli --cluster create failed:\n{(result.stdout + result.stderr)[-3000:]}")


def wait_until_ok(cluster: tuple[redis_stack.RedisNode, ...], timeout: float = FORM_TIMEOUT_S) -> None:
    """Wait until every node reports ``cluster_state:ok`` and sees all masters and replicas:
    the state turns ok as soon as the slots are covered, while a replica may still show as
    an empty master until gossip has spread its role. And until every replica has synced with
    its master: before that a ``WAIT 1`` on the master returns 0, and the edge refuses the
    idempotency claims of that shard (503)."""
    deadline = time.monotonic() + timeout
    states: list[str] = []
    while time.monotonic() < deadline:
        states = [cluster_info(n).get("cluster_state", "?") for n in cluster]
        if (
            all(s == "ok" for s in states)
            and all(formed(cluster_nodes(n)) for n in cluster)
            and all(synced(n) for n in cluster)
        ):
            return
        time.sleep(0.3)
    raise StackError(f"the Redis Cluster did not become healthy within {timeout:.0f} s: states {states}")


def synced(node: redis_stack.RedisNode) -> bool:
    """Whether ``node`` is a master, or a replica whose link to its master is up (synced)."""
    info = parse_cluster_info(_command(node, "INFO", "replication"))
    return info.get("role") != "slave" or info.get("master_link_status") == "up"


def formed(members: list[ClusterNode]) -> bool:
    """Every expected node is connected, each master owns slots and has its replicas."""
    masters = {m.node_id for m in members if m.role == "master" and m.slots > 0}
    replicas = [m for m in members if m.role == "replica" and m.master_id in masters]
    return (
        len(members) == NODE_COUNT
        and all(m.connected for m in members)
        and len(masters) == MASTERS
        and all(sum(r.master_id == m for r in replicas) == REPLICAS_PER_MASTER for m in masters)
    )


def describe(cluster: tuple[redis_stack.RedisNode, ...]) -> dict[str, object]:
    """The cluster as its first answering node sees it: state, masters, replicas, slots."""
    for node in cluster:
        try:
            info, members = cluster_info(node), cluster_nodes(node)
        except redis_sync.RedisError:
            continue
        return {
            "state": info.get("cluster_state"),
            "slots_ok": int(info.get("cluster_slots_ok", "0")),
            "masters": sum(m.role == "master" for m in members),
            "replicas": sum(m.role == "replica" for m in members),
            "nodes": [
                {"address": m.address, "role": m.role, "connected": m.connected, "slots": m.slots}
                for m in members
            ],
        }
    return {"error": "no node of the Redis Cluster answers"}


def describe_lines(redis: dict[str, object]) -> list[str]:
    """``stack status`` text for a Redis Cluster (nothing for a single Redis)."""
    members = redis.get("nodes")
    view = redis.get("cluster")
    if not isinstance(members, list) or not members:
        return []
    lines = [
        f"  {n['name']:<11}{n['address']:<29}" + (f"pid {n['pid']}" if n["pid"] else "not running")
        for n in members
    ]
    if isinstance(view, dict) and "error" in view:
        lines.append(f"  {view['error']}")
    elif isinstance(view, dict):
        lines.append(f"  cluster {view['state']}: {view['masters']} masters, {view['replicas']} replicas")
    return lines
