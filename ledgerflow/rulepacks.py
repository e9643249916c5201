"""Publishing rule packs to ``policy.rules`` (used by ``PUT /v1/policy/rules`` and the CLI).

Sequence:
1. Validate the pack (``load_rule_pack``, compiled once, in a worker thread: compiling a pack
   of the largest size ``policy/packlimits.py`` allows takes up to about a second): an
   invalid pack is refused, nothing is published.
   Sign it — or take the detached signature the caller made with ``ledgerflow policy sign`` —
   and verify the signature against the policy trust store: the agents would refuse a pack
   that does not verify, so it is refused here first. Without a signature the dev policy
   key (``<state dir>/policy/``, made by ``stack up``) signs, when there is one.
2. Read ``policy.rules`` (small, one partition) to find the tenant's latest version.
3. Publish ``RulePackPublished`` with version + 1, keyed by tenant, and wait for the ack.
With ``deadline_s`` (the edge's per-call deadline) step 2 raises ``TimeoutError`` past it: a paused
broker stalled its read for as long as it stayed paused. Step 3 is bounded by the producer's own
request timeout (the edge's: ``api/faults.KAFKA_REQUEST_TIMEOUT_MS``), which expires the record;
cancelling the send instead would leave it queued in the producer, to be written late, after the
lock is let go, under a version another publication may pick.
Steps 2 and 3 run inside ``hold(tenant)`` when the caller gives one: the edge holds a Redis lock
of the tenant there (``api/publish_lock.py``), else two publications of one tenant at the same
instant both picked the same version and the agents kept only the later record. ``policy.rules`` is
compacted with a compaction lag that keeps every version for replay (see docs/policy.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ledgerflow.auth.devkeys import DevKeys, existing_policy_keys
from ledgerflow.config import Settings
from ledgerflow.contracts import codec
from ledgerflow.contracts.codec import TOPIC_TYPES
from ledgerflow.contracts.events import new_event
from ledgerflow.contracts.payloads import RulePackPublished
from ledgerflow.errors import DecodeError, ValidationError
from ledgerflow.kafka.logs import RawRecord, read_topic
from ledgerflow.kafka.policy_trust import PolicyTrust
from ledgerflow.policy import CheckedPack, RulePack, check_rule_pack, load_rule_pack
from ledgerflow.policy.signing import SignatureRefused, sign, verify
from ledgerflow.topics import POLICY_RULES


@dataclass(frozen=True, slots=True)
class Published:
    tenant: str
    version: int
    constitution_hash: str
    event_id: str
    offset: int
    signer_kid: str = ""


def sign_with(keys: DevKeys, document: dict[str, Any], *, now: float | None = None) -> str:
    """A detached signature of ``document`` (validated first) by the dev policy key ``keys``."""
    checked = check_rule_pack(document)
    checked.compile()
    return _sign_checked(keys, checked, now=now)


def _sign_checked(keys: DevKeys, checked: CheckedPack, *, now: float | None = None) -> str:
    private_key = load_pem_private_key(keys.private_key_pem, password=None)
    moment = int(time.time() if now is None else now)
    return sign(checked.document(), private_key=private_key, kid=keys.kid, alg=keys.alg, signed_at=moment)


def signature_for(settings: Settings, document: dict[str, Any], signature: str | None) -> tuple[str, str]:
    """Step 1's signature: the given one or the dev policy key's, verified; (signature, kid).

    Checks ``document`` without compiling it (``check_rule_pack``): the caller compiles it once."""
    checked = check_rule_pack(document)
    if signature is None:
        keys = existing_policy_keys(settings.state_dir)
        if keys is None:
            raise ValidationError(
                "unsigned: the pack has no signature and there is no dev policy key; sign it with "
                "`ledgerflow policy sign` and pass the signature"
            )
        signature = _sign_checked(keys, checked)
    try:
        signed = verify(signature, checked.document(), PolicyTrust.of(settings).lookup)
    except SignatureRefused as exc:
        raise ValidationError(f"signature refused: {exc}") from None
    return signature, signed.kid


async def latest_version(settings: Settings, tenant: str) -> int:
    """Step 2: the highest version published for ``tenant`` (0 if none)."""
    latest = 0
    reader = cast(AsyncGenerator[RawRecord, None], read_topic(settings, settings.topic(POLICY_RULES)))
    async with contextlib.aclosing(reader) as records:
        async for rec in records:
            if rec.key != tenant.encode():
                continue
            try:
                event = codec.decode(rec.value or b"", allowed_types=TOPIC_TYPES[POLICY_RULES])
            except DecodeError:
                continue
            if isinstance(event.payload, RulePackPublished):
                latest = max(latest, event.payload.version)
    return latest


async def publish_pack(
    settings: Settings,
    document: dict[str, Any],
    *,
    producer_name: str,
    producer: AIOKafkaProducer | None = None,
    signature: str | None = None,
    hold: Callable[[str], AbstractAsyncContextManager[object]] | None = None,
    deadline_s: float | None = None,
) -> Published:
    pack: RulePack = await asyncio.to_thread(load_rule_pack, document)  # Step 1.
    signature, kid = signature_for(settings, document, signature)
    async with hold(pack.tenant) if hold is not None else contextlib.nullcontext():
        return await _write(settings, pack, signature, kid, producer_name, producer, deadline_s)


async def _write(
    settings: Settings,
    pack: RulePack,
    signature: str,
    kid: str,
    producer_name: str,
    producer: AIOKafkaProducer | None,
    deadline_s: float | None = None,
) -> Published:
    """Steps 2 and 3: the next version of ``pack.tenant``, written and acknowledged; step 2
    within ``deadline_s`` (None: no bound), else ``TimeoutError``."""
    async with asyncio.timeout(deadline_s):
        version = await latest_version(settings, pack.tenant) + 1  # Step 2.
    versioned = pack.with_version(version)
    event = new_event(
        "RulePackPublished",
        tenant=pack.tenant,
        subject=pack.tenant,
        payload=RulePackPublished(
            version=version,
            constitution_hash=versioned.constitution_hash,
            document=versioned.canonical_json().decode(),
            signature=signature,
        ),
        producer=producer_name,
        occurred_at_micros=time.time_ns() // 1000,
    )
    own = producer is None
    if producer is None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
    try:  # Step 3.
        meta = await producer.send_and_wait(
            settings.topic(POLICY_RULES), codec.encode(event), key=pack.tenant.encode()
        )
    finally:
        if own:
            await producer.stop()
    return Published(pack.tenant, version, versioned.constitution_hash, event.event_id, meta.offset, kid)
