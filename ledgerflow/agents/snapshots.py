"""The adapters behind the policy agent's ports that are not the output log or the sinks:
chain-head snapshots in Redis (``RedisChainHeads``) and the input topic read back by range
(``KafkaInputLog``)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.exceptions import NoScriptError, RedisError

from ledgerflow.agents.ports import Snapshot
from ledgerflow.config import Settings
from ledgerflow.contracts.chain import ChainHead
from ledgerflow.errors import InfrastructureError
from ledgerflow.kafka.logs import RawRecord, read_range
from ledgerflow.redisclient import async_client, is_cluster_client
from ledgerflow.redisvalues import text_map

log = logging.getLogger(__name__)

LAST_INPUT_FIELD = "__in"
OUT_OFFSET_FIELD = "__out"
NO_BASE = 2
"""``_SAVE``'s answer for a partial save with no stored snapshot under it, or an older one than
the snapshot it completes (``Snapshot.base``)."""
SNAPSHOT_VERSION = "v3"
"""v3: every chain of the partition has its head (v2 saves left out the heads a new owner learned
from the log past the snapshot, which recovery then re-read from the last 10,000 records on trust);
v2: fields are chain keys ``tenant/subject`` (v1 used the subject alone). A snapshot of an older
version lives under another key, so it is never read: recovery then reads the log."""


# KEYS: the partition's hash. ARGV: the snapshot's ``__out``, 1 if it holds every chain's head
# (else 0), the ``__out`` of the snapshot a partial save completes, then field/value pairs
# (``__out`` among them). Writes nothing and answers 0 when the stored ``__out`` is ahead (see
# ``RedisChainHeads.save``), and answers 2 when this one holds only some heads and the stored
# snapshot is gone or older than the one it completes: it would leave a snapshot missing heads.
_SAVE = """
local stored = redis.call('HGET', KEYS[1], '__out')
if ARGV[2] ~= '1' and (not stored or tonumber(stored) < tonumber(ARGV[3])) then
  return 2
end
if tonumber(ARGV[1]) < tonumber(stored or '-1') then
  return 0
end
for i = 4, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1
"""
_SAVE_SHA = hashlib.sha1(_SAVE.encode()).hexdigest()  # what SCRIPT LOAD answers for it


class RedisChainHeads:
    """One hash per partition: ``chain key -> "<sequence>|<hash>"``, plus ``__in`` and ``__out``.

    A chain key is ``decision_chain_key(tenant, subject)``; it contains ``/``, so it never
    collides with ``__in`` or ``__out``.

    A save only moves forward: it writes nothing when the stored ``__out`` (the output offset the
    snapshot covers) is ahead of its own. A member stalled between its write and its save (a
    SIGSTOPped zombie, a save retried through a Redis outage) would otherwise write its older
    heads over a newer owner's; the newer owner's later saves rewrite only the chains it changed,
    so the stale head would stay under a newer ``__out`` and a recovery reading the log only from
    there would fork that chain. Output offsets follow log order across owners (the fenced
    producer), so the larger ``__out`` is the newer snapshot."""

    def __init__(self, settings: Settings, name: str) -> None:
        self._settings = settings
        self._name = name
        self._redis: aioredis.Redis | None = None

    def key(self, partition: int) -> str:
        return f"lf:{self._settings.topic_prefix}{self._name}:heads:{SNAPSHOT_VERSION}:{{p{partition}}}"

    def _client(self) -> aioredis.Redis:
        if self._redis is None:  # created on the worker's event loop
            self._redis = async_client(self._settings.redis_url, socket_timeout=10)
        return self._redis

    async def load(self, partition: int) -> Snapshot:
        snapshot = Snapshot()
        try:
            cached = await self._client().hgetall(self.key(partition))
        except (RedisError, OSError):
            cached = {}
        for name, text in text_map(cached).items():
            if name == LAST_INPUT_FIELD:
                snapshot.last_input = int(text)
            elif name == OUT_OFFSET_FIELD:
                snapshot.out_offset = int(text)
            else:
                seq, _, digest = text.partition("|")
                snapshot.heads[name] = ChainHead(name, int(seq), digest)
        return snapshot

    async def drop(self, partition: int) -> None:
        await self._retried(lambda: self._client().delete(self.key(partition)), "dropping chain heads")

    async def save(self, snapshots: Mapping[int, Snapshot]) -> set[int]:
        if not snapshots:
            return set()
        answers = await self._retried(lambda: self._save(snapshots), "saving chain heads")
        return {p for p, answer in zip(snapshots, answers, strict=True) if answer == NO_BASE}

    async def _save(self, snapshots: Mapping[int, Snapshot]) -> list[Any]:
        # A new pipeline each attempt: redis-py empties a pipeline when it executes, failed or
        # not, so executing the same one again sends nothing and the save would count as done.
        try:
            return list(await self._pipeline(snapshots).execute())
        except NoScriptError:  # a restarted or newly promoted Redis has no scripts: load and redo
            await self._client().script_load(_SAVE)  # on every master of a cluster
            return list(await self._pipeline(snapshots).execute())

    def _pipeline(self, snapshots: Mapping[int, Snapshot]) -> aioredis.client.Pipeline:
        client = self._client()
        # Each partition's snapshot is one script call, atomic by itself; a Redis Cluster keeps
        # the partitions' hashes in different slots, where MULTI across them is refused.
        pipe = client.pipeline(transaction=not is_cluster_client(client))
        for p, snapshot in snapshots.items():
            pairs: list[str] = [
                x for s, head in snapshot.heads.items() for x in (s, f"{head.sequence}|{head.hash}")
            ]
            pairs += [LAST_INPUT_FIELD, str(snapshot.last_input), OUT_OFFSET_FIELD, str(snapshot.out_offset)]
            complete = "1" if snapshot.complete else "0"
            # execute_command: redis-py's cluster pipeline refuses evalsha() but routes EVALSHA by its key
            offsets = (str(snapshot.out_offset), complete, str(snapshot.base))
            pipe.execute_command("EVALSHA", _SAVE_SHA, 1, self.key(p), *offsets, *pairs)
        return pipe

    async def _retried(self, call: Callable[[], Awaitable[Any]], what: str) -> Any:
        delay = 0.2
        while True:
            try:
                return await call()
            except (RedisError, OSError) as exc:  # a cache: retry, never lose the decision
                log.warning("%s: %s failed (%r); retrying in %.1f s", self._name, what, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class KafkaInputLog:
    """An input topic (full name) read back by offset range; its end offsets asked on one consumer
    kept for the purpose (a consumer started per question cost a connection and a metadata round
    each: the training agent's first tick, recovering every partition, overran its interval),
    stopped for good by ``close`` when the worker stops (``agents/app.input_log``)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self._settings = settings
        self._topic = topic
        self._ends: AIOKafkaConsumer | None = None
        self._starting = asyncio.Lock()
        self._closed = False

    async def read(self, partition: int, start: int, end: int) -> Sequence[RawRecord]:
        return await read_range(self._settings, self._topic, partition, start, end)

    async def end(self, partition: int) -> int:
        consumer = await self._consumer()
        tp = TopicPartition(self._topic, partition)
        try:
            return int((await consumer.end_offsets([tp]))[tp])
        except Exception:
            await self.stop()  # a fresh consumer for the next question
            raise

    async def _consumer(self) -> AIOKafkaConsumer:
        async with self._starting:
            if self._closed:
                raise InfrastructureError(f"{self._topic}: the input log is closed (the worker is stopping)")
            if self._ends is None:
                consumer = AIOKafkaConsumer(
                    bootstrap_servers=self._settings.kafka_bootstrap, enable_auto_commit=False
                )
                await consumer.start()
                self._ends = consumer
            return self._ends

    async def stop(self) -> None:
        """Stop the end-offsets consumer; the next question starts a fresh one."""
        consumer, self._ends = self._ends, None
        if consumer is not None:
            await consumer.stop()

    async def close(self) -> None:
        """Stop the end-offsets consumer for good: a later ``end`` raises instead of starting one
        (a start under way is waited for, so its consumer is stopped too)."""
        async with self._starting:
            self._closed = True
            consumer, self._ends = self._ends, None
        if consumer is not None:
            await consumer.stop()
