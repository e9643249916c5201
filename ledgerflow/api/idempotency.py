"""Idempotent requests at the edge: one key space, one fingerprint, one claim protocol.

Two kinds of retry are recognised, each in its own Redis key space:

- ``POST /v1/conversation/step`` with an ``Idempotency-Key`` header: scoped to
  (tenant, token subject, key), so two users of a tenant never share a key.
- ``POST /v1/events`` with a client ``event_id``: scoped to (tenant, event id).

Every Redis key is built by :func:`redis_key`, which cannot map two distinct tuples to one
key: each component is written as itself when it is an id (``contracts/ids.py``: no
``/``, no braces) and as ``~<sha256>`` otherwise (``~`` is not in the grammar either),
components are joined with ``/``, and the client's ``Idempotency-Key`` is always hashed.
The tenant sits in braces (a Redis Cluster hash tag, as for every per-tenant key).

A claim stores a fingerprint of the request (SHA-256 of its canonical JSON) with the
answer, so a reuse with a different request is refused (422, as in the IETF
Idempotency-Key draft) instead of being silently answered with another request's result.
Claims live for ``HORIZON_S`` (24 h): a retry after that is a new request.

A step's event id is derived from its claim's scope and fingerprint (:func:`step_event_id`), not
drawn: a retry after Redis lost the claim (a ``FLUSHALL``, a restart without persistence, a
failover to a replica without it) publishes the *same* event id again, a duplicate delivery the
agents, the projector and the audit recognise, never a second turn under a new id.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from ledgerflow.api.faults import bounded, bounded_retried
from ledgerflow.contracts.events import derived_event_id
from ledgerflow.contracts.ids import is_id
from ledgerflow.errors import DomainError, InfrastructureError, ValidationError
from ledgerflow.redisclient import ReplicaNotConfirmed, set_replicated

__all__ = [
    "HORIZON_S",
    "MAX_KEY_CHARS",
    "STALE_S",
    "Claim",
    "Decision",
    "InFlight",
    "check_idempotency_key",
    "claim",
    "event_key",
    "fingerprint",
    "judge",
    "keyed_command_id",
    "keyed_id",
    "record_position",
    "record_published",
    "redis_key",
    "release",
    "release_after_failure",
    "released",
    "step_event_id",
    "step_key",
    "undo_to",
]

log = logging.getLogger(__name__)

HORIZON_S = 24 * 3600
"""How long a claim is remembered: a retry within it is answered, not published again."""
MAX_KEY_CHARS = 255
"""Longest ``Idempotency-Key`` header value accepted (longer → 422)."""
STALE_S = 30.0
"""A claim still without a position after this long belongs to a request that failed or
died after claiming (every publish is bounded by api/faults.py DEADLINE_S, far below)."""
REUSED = "Idempotency-Key reused with a different request"
EVENT_REUSED = "event_id reused with a different event"


class InFlight(DomainError):
    """The first request with this key is still being processed (409: retry shortly)."""


@dataclass(frozen=True, slots=True)
class Claim:
    """What a key holds: the request's fingerprint, its event id, when it was claimed
    (Unix seconds) and, once published, its position ``<partition>:<offset>`` (None while
    the request that claimed it is publishing)."""

    fingerprint: str
    event_id: str
    claimed_at: float
    position: str | None = None

    def encode(self) -> bytes:
        return orjson.dumps(
            {"f": self.fingerprint, "e": self.event_id, "t": self.claimed_at, "p": self.position}
        )

    @classmethod
    def decode(cls, raw: bytes | str) -> Claim:
        obj = orjson.loads(raw)
        return cls(obj["f"], obj["e"], float(obj["t"]), obj.get("p"))


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a request after its claim: ``publish`` the event ``event_id``
    (a first request, or a takeover of a stale claim: the same event id again), or answer
    with the earlier ``position``."""

    publish: bool
    event_id: str
    position: str | None
    held: Claim | None = None  # when publishing: the claim this request holds in Redis (``release``)


def judge(earlier: Claim, mine: Claim, now: float, reused: str = REUSED) -> Decision:
    """Pure: the decision for a request whose key already holds ``earlier``.

    A different fingerprint → ValidationError (422). Published → answer with its
    position. ``earlier`` is ``mine`` itself → publish: the SET that made it reached Redis
    but its reply was lost and the client sent it again (redis-py retries a command once
    after a socket timeout, e.g. while Redis is paused). Still publishing → InFlight (409),
    unless the claim is older than ``STALE_S``: the request that made it failed or died without recording its
    position, so this one publishes the *same* event id again (a duplicate delivery at
    worst, which the agents and the audit recognise by event id).
    """
    if earlier.fingerprint != mine.fingerprint:
        raise ValidationError(reused)
    if earlier.position is not None:
        return Decision(False, earlier.event_id, earlier.position)
    if earlier == mine:  # same request, same instant: our own claim, not another request's
        return Decision(True, mine.event_id, None)
    if now - earlier.claimed_at < STALE_S:
        raise InFlight("the first request with this key is still being processed; retry shortly")
    return Decision(True, earlier.event_id, None)


def _component(value: str) -> str:
    if is_id(value):
        return value
    return "~" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def redis_key(prefix: str, space: str, tenant: str, *parts: str) -> str:
    """``lf:<prefix><space>:{<tenant>}/<part>/...``: injective in (tenant, *parts).

    ``prefix`` and ``space`` are the deployment's constants (topic prefix, key space
    name), never client input.
    """
    return f"lf:{prefix}{space}:{{{_component(tenant)}}}/" + "/".join(_component(p) for p in parts)


def step_key(prefix: str, tenant: str, sub: str, key: str) -> str:
    """The Redis key of a step's ``Idempotency-Key``: (tenant, token subject, SHA-256 of key)."""
    return redis_key(
        prefix, "idem", tenant, sub, hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
    )


def step_event_id(tenant: str, sub: str, key: str, request_fingerprint: str) -> str:
    """Pure: the event id of a step with ``Idempotency-Key`` ``key``, the same for the same
    (tenant, token subject, key, request) whatever Redis remembers; distinct scopes or requests
    give distinct ids (``step_key`` is injective and holds no ``\x1f``, the fingerprint is hex)."""
    return keyed_id("step", tenant, sub, key, request_fingerprint)


def keyed_id(space: str, tenant: str, sub: str, key: str, request_fingerprint: str) -> str:
    """Pure: an id derived from a request's ``Idempotency-Key`` scope and fingerprint, one per
    ``space`` (``step``: an event id; ``training``: a command id)."""
    return derived_event_id(space, step_key("", tenant, sub, key), request_fingerprint)


def keyed_command_id(space: str, tenant: str, sub: str, key: str, request: dict[str, Any]) -> str:
    """Pure: the command id of an admin command sent with ``Idempotency-Key`` ``key`` (checked:
    ValidationError, 422, for an empty or over-long one): the same for a retry of the same request,
    so a command whose 503 still reached the log is answered once (``api/training.py``,
    ``api/models.py``)."""
    check_idempotency_key(key)
    return keyed_id(space, tenant, sub, key, fingerprint(request))


def event_key(prefix: str, tenant: str, event_id: str) -> str:
    """The Redis key of an ingested event id: (tenant, event id)."""
    return redis_key(prefix, "ingest", tenant, event_id)


def check_idempotency_key(value: str) -> str:
    """The header value if usable; ValidationError (422) if empty or too long."""
    if not value.strip():
        raise ValidationError("Idempotency-Key: must not be empty")
    if len(value) > MAX_KEY_CHARS:
        raise ValidationError(f"Idempotency-Key: {len(value)} characters; at most {MAX_KEY_CHARS}")
    return value


def fingerprint(request: Any) -> str:
    """SHA-256 of the canonical JSON (sorted keys) of what the request asks for."""
    return hashlib.sha256(orjson.dumps(request, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def claim(redis: aioredis.Redis, key: str, mine: Claim, reused: str = REUSED) -> Decision:
    """Step 1 of an idempotent request: claim ``key`` for ``mine`` (SET NX, ``HORIZON_S``),
    or judge the earlier claim (see :func:`judge`). Redis errors propagate (→ 503), and so does
    ReplicaNotConfirmed after the claim is undone (see :func:`_claim_replicated`; if the undo
    itself fails, its Redis error propagates instead: a 503 too, and the claim goes stale)."""
    for _ in range(2):  # a claim can expire between SET and GET: try once more
        if await _claim_replicated(redis, key, mine.encode(), None, nx=True, ex=HORIZON_S):
            return Decision(True, mine.event_id, None, mine)
        raw = await redis.get(key)
        if raw is not None:
            earlier = Claim.decode(raw)
            decision = judge(earlier, mine, time.time(), reused)
            if decision.publish:  # a takeover: the claim is ours now, with the earlier event id
                taken = Claim(mine.fingerprint, decision.event_id, time.time())
                await _claim_replicated(redis, key, taken.encode(), undo_to(earlier, mine, raw), keepttl=True)
                return Decision(True, decision.event_id, None, taken)
            return decision
    raise InFlight("a request with this key is being processed; retry shortly")


def undo_to(earlier: Claim, mine: Claim, raw: bytes | str) -> bytes | str | None:
    """Pure: what a takeover of ``earlier`` (stored as ``raw``) is undone to. Another request's
    stale claim is put back, so a retry takes it over again and publishes *its* event id (deleting
    it would let the retry publish a second event id for one request); ``mine`` itself (our own
    SET whose reply was lost, see :func:`judge`) is deleted, as a first claim is."""
    return None if earlier == mine else raw


# Compare-and-undo: only a key that still holds what this request wrote is touched, so a claim made
# since by another request is never deleted. ARGV[2], when given, is the value to put back.
_UNDO = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if #ARGV == 1 then return redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
"""


async def _claim_replicated(
    redis: aioredis.Redis, key: str, value: bytes, previous: bytes | str | None, **options: Any
) -> Any:
    """``set_replicated``; a claim no replica confirmed is undone (``previous`` put back, or the key
    deleted) before ReplicaNotConfirmed propagates: a failover could forget it, and the event it
    stands for is not published yet, so the request is refused (503) and its retry claims again."""
    try:
        return await set_replicated(redis, key, value, **options)
    except ReplicaNotConfirmed:
        undo = [value] if previous is None else [value, previous]
        await redis.eval(_UNDO, 1, key, *undo)
        raise


async def record_position(redis: aioredis.Redis, key: str, mine: Claim, event_id: str, position: str) -> None:
    """Step 3: remember where the event landed (keeps the claim's expiry). The request is
    acknowledged after this: on a Redis Cluster it waits for the replica, so a failover keeps it.
    If no replica confirms it (ReplicaNotConfirmed), it stays on the master and the caller still
    acknowledges (the event is on the log): the claim naming the event id is on the replica
    already, so a failover can at worst make a retry publish that same event id again."""
    claimed = Claim(mine.fingerprint, event_id, mine.claimed_at, position).encode()
    await set_replicated(redis, key, claimed, keepttl=True)


async def record_published(
    redis: aioredis.Redis, key: str, mine: Claim, event_id: str, position: str
) -> None:
    """``record_position`` once the event is on the log, where nothing may turn the answer into
    an error: tried again through a failover (``bounded_retried``: a claim left without its
    position answers every retry 409 until it goes stale, then publishes its event id again), and
    only logged if it still fails."""
    try:
        await bounded_retried(
            lambda: record_position(redis, key, mine, event_id, position), "Redis claim position"
        )
    except (InfrastructureError, RedisError) as exc:  # RedisError: an answer no retry changes (WRONGTYPE)
        log.warning("event %s published; its idempotency record was not updated: %s", event_id, exc)


def released(held: Claim) -> Claim:
    """Pure: ``held`` after its publish failed: the same request and event id, stale at once."""
    return Claim(held.fingerprint, held.event_id, 0.0)


async def release(redis: aioredis.Redis, key: str, held: Claim) -> None:
    """Step 2's claim after its publish failed: marked stale (``released``), not deleted, so the
    client's retry takes it over at once and publishes the *same* event id. The publish may have
    reached the log anyway (a timeout): the retry is then a duplicate delivery the agents and the
    audit recognise by event id, never a second turn under a new id. Only a key that still holds
    ``held`` is touched (the compare-and-undo script)."""
    await redis.eval(_UNDO, 1, key, held.encode(), released(held).encode())


async def release_after_failure(redis: aioredis.Redis, key: str, held: Claim | None) -> None:
    """``release``, bounded, after a publish failed; a Redis failure here is only logged: the
    claim then goes stale by itself (``STALE_S``) and the retry takes it over the same way."""
    if held is None:
        return
    try:
        await bounded(release(redis, key, held), "Redis claim release")
    except (InfrastructureError, RedisError) as exc:  # RedisError: an answer (OOM, BUSY, WRONGTYPE)
        log.warning("could not release the claim %s (taken over once stale): %s", key, exc)
