"""Which client a Redis URL makes (no connection is opened: redis-py connects lazily)."""

from __future__ import annotations

import asyncio

import pytest
import redis as redis_sync
import redis.asyncio as aioredis
from redis._parsers.base import _RESPBase
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import Connection as AsyncConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from ledgerflow.api.faults import bounded, bounded_retried
from ledgerflow.api.problems import problem_for
from ledgerflow.errors import InfrastructureError
from ledgerflow.redisclient import (
    MasterDemoted,
    ReplicaNotConfirmed,
    addresses,
    async_client,
    cluster_url,
    confirmed,
    confirmed_by_absence,
    error_code,
    execute_waited,
    is_cluster,
    node_url,
    refusing,
    server_url,
    sync_client,
)


@pytest.mark.parametrize(
    ("url", "cluster", "plain"),
    [
        ("redis://127.0.0.1:6379/0", False, "redis://127.0.0.1:6379/0"),
        ("rediss://u:p@h:1/0", False, "rediss://u:p@h:1/0"),
        ("redis+cluster://127.0.0.1:7000/0", True, "redis://127.0.0.1:7000/0"),
        ("rediss+cluster://u:p%40x@h:7000", True, "rediss://u:p%40x@h:7000"),
        ("redis+cluster://h:7000/0?socket_timeout=3", True, "redis://h:7000/0?socket_timeout=3"),
    ],
)
def test_the_scheme_says_cluster_and_the_server_url_drops_only_the_suffix(
    url: str, cluster: bool, plain: str
) -> None:
    assert is_cluster(url) is cluster
    assert server_url(url) == plain


def test_cluster_url_is_idempotent_and_inverts_server_url() -> None:
    assert cluster_url("redis://h:1/0") == "redis+cluster://h:1/0"
    assert cluster_url("redis+cluster://h:1/0") == "redis+cluster://h:1/0"
    assert server_url(cluster_url("rediss://h:1")) == "rediss://h:1"


def test_a_plain_url_makes_the_single_server_client() -> None:
    client = async_client("redis://127.0.0.1:1/0", socket_timeout=1)
    assert type(client) is aioredis.Redis
    asyncio.run(client.aclose())


def test_a_cluster_url_makes_the_cluster_client_with_a_retry_for_failovers() -> None:
    client = async_client("redis+cluster://127.0.0.1:1/0", socket_timeout=1)
    assert isinstance(client, AsyncRedisCluster)
    assert client.retry.get_retries() > 0  # a failover: the client tries again before giving up


def test_a_caller_s_retry_wins_over_the_cluster_default() -> None:
    mine = Retry(NoBackoff(), 1)
    client = async_client("redis+cluster://127.0.0.1:1/0", retry=mine)
    assert isinstance(client, AsyncRedisCluster)
    assert client.retry is mine


def test_an_unreachable_cluster_is_a_redis_connection_error_for_blocking_callers() -> None:
    # The blocking cluster client reads the slot map in its constructor; callers catch RedisError.
    with pytest.raises(
        redis_sync.ConnectionError, match="no node of the Redis Cluster at 127.0.0.1:1 answers"
    ):
        sync_client("redis+cluster://127.0.0.1:1/0", socket_timeout=1, socket_connect_timeout=1)


def test_a_cluster_url_may_name_several_nodes_and_the_server_url_keeps_the_first() -> None:
    url = "redis+cluster://u:p@127.0.0.1:7000,127.0.0.1:7001,h3:7002/0"
    assert addresses(url) == [("127.0.0.1", 7000), ("127.0.0.1", 7001), ("h3", 7002)]
    assert server_url(url) == "redis://u:p@127.0.0.1:7000/0"
    assert cluster_url("redis://a:1,b:2/0") == "redis+cluster://a:1,b:2/0"
    assert addresses("redis://h/0") == [("h", 6379)]


def test_every_named_node_is_a_startup_node_of_the_cluster_client() -> None:
    client = async_client("redis+cluster://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/0", socket_timeout=1)
    assert isinstance(client, AsyncRedisCluster)
    assert sorted(n.port for n in client.nodes_manager.startup_nodes.values()) == [1, 2, 3]


def test_node_url_names_one_server_of_a_cluster_url_with_its_credentials_db_and_options() -> None:
    url = "rediss+cluster://u:p%40x@h1:7000,h2:7001/3?socket_timeout=2"
    assert node_url(url, "h2", 7001) == "rediss://u:p%40x@h2:7001/3?socket_timeout=2"
    assert node_url("redis+cluster://h1:7000,h2:7001/0", "h1", 7000) == "redis://h1:7000/0"


class _Pipe:
    """A pipeline whose ``execute`` fails as redis-py's does."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    async def execute(self) -> list[object]:
        raise self.error


@pytest.mark.parametrize(
    "reply",
    [
        "WAIT cannot be used with replica instances. Please also note ...",
        "UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)",
    ],
    ids=["demoted-before", "demoted-while-waiting"],
)
def test_a_wait_on_a_demoted_master_is_transient(reply: str) -> None:
    """Both seen in ``ledgerflow chaos --redis-cluster``, where they stopped the projector."""
    refused = redis_sync.ResponseError(f"Command # 2 (WAIT 1 100) of pipeline caused error: ('{reply}',)")
    with pytest.raises(MasterDemoted):
        asyncio.run(execute_waited(_Pipe(refused)))


@pytest.mark.parametrize("reply", [True, b"OK", "OK"])
def test_a_write_no_replica_confirmed_is_transient(reply: object) -> None:
    with pytest.raises(ReplicaNotConfirmed):
        confirmed(reply, 0)
    with pytest.raises(ReplicaNotConfirmed):
        confirmed(reply, -1)  # never returned by Redis; still not a confirmation


@pytest.mark.parametrize("replicas", [1, 2])
def test_a_write_a_replica_confirmed_is_its_reply(replicas: int) -> None:
    assert confirmed(True, replicas) is True


@pytest.mark.parametrize("reply", [None, False])
def test_a_set_that_wrote_nothing_needs_no_replica(reply: object) -> None:
    """``SET NX`` on a taken key: the caller reads the key next, nothing of its own is at stake."""
    assert confirmed(reply, 0) is reply


@pytest.mark.parametrize("role", [[b"master", 7, []], ["master", 0, []], (b"master", 12, ())])
def test_a_master_with_no_replica_connected_counts_as_confirmed(role: object) -> None:
    """No replica a failover could promote without the write: as safe as one Redis."""
    assert confirmed_by_absence(role) == 1
    assert confirmed(True, confirmed_by_absence(role)) is True


@pytest.mark.parametrize(
    "role",
    [
        [b"master", 7, [[b"127.0.0.1", b"7004", b"7"]]],  # connected but silent: it could be promoted
        [b"slave", b"127.0.0.1", 7001, b"connected", 7],  # demoted meanwhile
        [b"master"],
        None,
        b"master",
    ],
)
def test_a_connected_replica_or_an_odd_role_reply_is_not_a_confirmation(role: object) -> None:
    assert confirmed_by_absence(role) == 0
    with pytest.raises(ReplicaNotConfirmed):
        confirmed(True, confirmed_by_absence(role))


def test_at_the_edge_an_unconfirmed_write_is_a_503() -> None:
    async def unconfirmed() -> object:
        return confirmed(True, 0)

    with pytest.raises(InfrastructureError, match="ReplicaNotConfirmed"):
        asyncio.run(bounded(unconfirmed(), "Redis idempotency claim"))


def test_any_other_error_of_a_waited_pipeline_is_left_as_it_is() -> None:
    error = redis_sync.ResponseError("WRONGTYPE Operation against a key")
    with pytest.raises(redis_sync.ResponseError) as raised:
        asyncio.run(execute_waited(_Pipe(error)))
    assert raised.value is error


class _TornDownWriter:
    """A stream writer whose transport was torn down under it (redis-py issue #4287)."""

    def writelines(self, data: object) -> None:
        raise TypeError("'NoneType' object is not callable")

    async def drain(self) -> None:
        raise AssertionError("not reached")


@pytest.mark.parametrize("writer", [None, _TornDownWriter()], ids=["closed", "torn-down"])
def test_writing_on_a_connection_closed_under_the_command_is_a_connection_error(writer: object) -> None:
    """Exactly ConnectionError: the cluster client retries only the exact types it lists."""
    connection = AsyncConnection(host="127.0.0.1", port=1)
    connection._writer = writer  # type: ignore[assignment]
    with pytest.raises(redis_sync.ConnectionError) as raised:
        asyncio.run(connection._send_packed_command([b"*1\r\n$4\r\nPING\r\n"]))
    assert type(raised.value) is redis_sync.ConnectionError


@pytest.mark.parametrize(
    "refusal",
    [
        redis_sync.exceptions.OutOfMemoryError("OOM command not allowed when used memory > 'maxmemory'."),
        redis_sync.exceptions.ReadOnlyError("READONLY You can't write against a read only replica."),
        redis_sync.exceptions.BusyLoadingError("LOADING Redis is loading the dataset in memory"),
        redis_sync.exceptions.MasterDownError("MASTERDOWN Link with MASTER is down"),
    ],
)
def test_a_redis_that_is_up_but_refusing_is_a_503_with_retry_after(refusal: Exception) -> None:
    """A Redis at maxmemory, read-only or loading answers with an error reply: a dependency fault
    (503 and Retry-After), like a connection error, not an internal error (500)."""

    async def refused() -> object:
        raise refusal

    with pytest.raises(InfrastructureError, match=type(refusal).__name__):
        asyncio.run(bounded(refused(), "Redis idempotency claim"))
    answer = problem_for(refusal)
    assert answer.status_code == 503 and answer.headers["Retry-After"]


# What Redis 7 answers, verbatim, read by redis-py's own parser (so the exception is the class and
# message redis-py raises: a plain ResponseError for BUSY, MISCONF and NOREPLICAS).
REFUSAL_REPLIES = {
    "busy": "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
    "misconf": (
        "MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist to "
        "disk. Commands that may modify the data set are disabled, because this instance is configured "
        "to report errors during writes if RDB snapshotting fails (stop-writes-on-bgsave-error option). "
        "Please check the Redis logs for details about the RDB error."
    ),
    "noreplicas": "NOREPLICAS Not enough good replicas to write.",
    "oom": "OOM command not allowed when used memory > 'maxmemory'.",
    "readonly": "READONLY You can't write against a read only replica.",
    "loading": "LOADING Redis is loading the dataset in memory",
    "masterdown": "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "in-a-script": "MISCONF Redis is configured to save RDB snapshots … script: 4a3b, on @user_script:1.",
}
OTHER_REPLIES = {
    "wrongtype": "WRONGTYPE Operation against a key holding the wrong kind of value",
    "script-bug": "ERR user_script:1: Script attempted to access nonexistent global variable 'x'",
    "unknown-command": "ERR unknown command 'FOO', with args beginning with: ",
    "noscript": "NOSCRIPT No matching script. Please use EVAL.",
    "notbusy": "NOTBUSY No scripts in execution right now.",
    "busygroup": "BUSYGROUP Consumer Group name already exists",
    "empty": "",
}


def _reply(text: str) -> redis_sync.exceptions.ResponseError:
    error = _RESPBase.parse_error(text)
    assert isinstance(error, redis_sync.exceptions.ResponseError | redis_sync.exceptions.BusyLoadingError)
    return error  # type: ignore[return-value]


def _raised(reply: str, where: str) -> Exception:
    """``reply`` as redis-py raises it for one command, or for a command of a pipeline (the reply
    prefixed with the command that got it: the asyncio client quotes it as a tuple, the other not)."""
    error = _reply(reply)
    command = ("EVALSHA", "4a3b", "1", "k:{c}", "it's")
    if where == "async-pipeline":
        aioredis.Redis().pipeline().annotate_exception(error, 2, command)
    elif where == "pipeline":
        redis_sync.Redis().pipeline().annotate_exception(error, 2, command)
    return error


WHERE = ["command", "pipeline", "async-pipeline"]


@pytest.mark.parametrize("reply", list(REFUSAL_REPLIES.values()), ids=list(REFUSAL_REPLIES))
@pytest.mark.parametrize("where", WHERE)
def test_every_refusal_of_a_redis_that_is_up_is_told_by_its_code(reply: str, where: str) -> None:
    error = _raised(reply, where)
    assert refusing(error)
    assert error_code(error) == reply.split(" ", 1)[0]


@pytest.mark.parametrize("reply", list(OTHER_REPLIES.values()), ids=list(OTHER_REPLIES))
@pytest.mark.parametrize("where", WHERE)
def test_any_other_error_reply_is_not_a_refusal(reply: str, where: str) -> None:
    assert not refusing(_raised(reply, where))


@pytest.mark.parametrize(
    "other",
    [ValueError("BUSY"), redis_sync.exceptions.DataError("BUSY"), MasterDemoted("a master was demoted")],
    ids=["not-redis", "not-a-reply", "cluster-retry"],
)
def test_only_error_replies_are_refusals(other: Exception) -> None:
    assert not refusing(other)


@pytest.mark.parametrize("reply", ["busy", "misconf", "noreplicas"])
def test_a_refusal_redis_py_has_no_class_for_is_a_503_with_retry_after(reply: str) -> None:
    """BUSY (a long script), MISCONF (a failed background save) reach the edge as a plain
    ResponseError: a dependency fault like the others, not a 500."""

    async def refused() -> object:
        raise _reply(REFUSAL_REPLIES[reply])

    with pytest.raises(InfrastructureError, match=reply.upper()):
        asyncio.run(bounded(refused(), "Redis idempotency claim"))
    answer = problem_for(_reply(REFUSAL_REPLIES[reply]))
    assert answer.status_code == 503 and answer.headers["Retry-After"]


def test_an_error_reply_that_is_not_a_refusal_stays_what_it_was() -> None:
    """WRONGTYPE (a bug, not a dependency fault) is not hidden behind a 503: it propagates, a 500."""

    async def wrong() -> object:
        raise _reply(OTHER_REPLIES["wrongtype"])

    with pytest.raises(redis_sync.exceptions.ResponseError, match="WRONGTYPE"):
        asyncio.run(bounded(wrong(), "Redis read"))
    assert problem_for(_reply(OTHER_REPLIES["wrongtype"])).status_code == 500


def test_a_position_write_refused_for_a_moment_is_tried_again() -> None:
    """After a publish, the idempotency claim's position is written through ``bounded_retried``: a
    Redis that is BUSY for a moment must not leave the claim without its position (every retry of
    the request a 409 until the claim goes stale, then a second publish)."""
    tries: list[int] = []

    async def write() -> str:
        tries.append(1)
        if len(tries) < 3:
            raise _reply(REFUSAL_REPLIES["busy"])
        return "OK"

    assert asyncio.run(bounded_retried(write, "Redis claim position", first_pause=0.0)) == "OK"
    assert len(tries) == 3
