"""A ``POST /v1/conversation/step`` retried with its Idempotency-Key is answered with the same
decision as the first request, whichever way the edge finds it: the first answer comes from the
live stream (the hub), a retry with ``wait=0`` only from the conversation read model. Both carry
the key that signed the pack in force (``signer_kid``, and ``signer=`` in the constitution
header); the read model used to drop it, so a retry answered without it."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from ledgerflow.api.constitution import HEADER
from ledgerflow.auth.devkeys import ensure_policy_keys
from ledgerflow.config import Settings
from ledgerflow.kafka.reference import builtin_default_pack
from ledgerflow.rulepacks import publish_pack
from tests.integration.edgekit import bearer
from tests.support.processes import Process

TIMEOUT_S = 90.0


def _step(edge: str, settings: Settings, key: str, conv: str, wait: float) -> httpx.Response:
    return httpx.post(
        f"{edge}/v1/conversation/step",
        json={"conversation_id": conv, "content": "hello, is my order on its way?"},
        headers=bearer(settings, "alice") | {"Idempotency-Key": key},
        params={"wait": wait},
        timeout=40,
    )


def _signed_pack(settings: Settings) -> str:
    """Publish a signed pack for ``acme``; the key id that signed it."""
    doc: dict[str, Any] = builtin_default_pack().document()
    doc.pop("version", None)
    doc["tenant"] = "acme"
    published = asyncio.run(publish_pack(settings, doc, producer_name="test"))
    assert published.signer_kid == ensure_policy_keys(settings.state_dir).kid
    return published.signer_kid


def _first_signed_answer(
    edge: str, settings: Settings, kid: str, worker: Process
) -> tuple[str, httpx.Response]:
    """Steps with new keys until one is decided under the signed pack (the worker reads it from
    ``policy.rules`` some time after it was published); that step's key and answer."""
    deadline = time.monotonic() + TIMEOUT_S
    while True:
        assert worker.popen.poll() is None, f"worker exited:\n{worker.log_tail()}"
        key = uuid.uuid4().hex
        first = _step(edge, settings, key, f"conv-{key[:8]}", wait=30)
        assert first.status_code == 200, first.text
        if first.json()["signer_kid"] == kid:
            return key, first
        assert time.monotonic() < deadline, f"no decision under the signed pack: {first.json()}"
        time.sleep(0.5)


def _retried(edge: str, settings: Settings, key: str) -> httpx.Response:
    """The step of ``key`` again with ``wait=0``: only the read model answers it, once the
    projector wrote the decision (202 until then)."""
    deadline = time.monotonic() + TIMEOUT_S
    while (retry := _step(edge, settings, key, f"conv-{key[:8]}", wait=0)).status_code == 202:
        assert time.monotonic() < deadline, "the decision never reached the read model"
        time.sleep(0.2)
    assert retry.status_code == 200, retry.text
    return retry


def test_a_retried_step_answers_the_decision_of_the_first_with_its_signer(
    settings: Settings, worker: Process, edge: str
) -> None:
    unsigned_key = uuid.uuid4().hex  # the built-in pack is in force: no signer either way
    unsigned = _step(edge, settings, unsigned_key, f"conv-{unsigned_key[:8]}", wait=30)
    assert unsigned.status_code == 200, unsigned.text
    assert unsigned.json()["signer_kid"] is None and "signer=" not in unsigned.headers[HEADER]
    again = _retried(edge, settings, unsigned_key)
    assert (again.json(), again.headers[HEADER]) == (unsigned.json(), unsigned.headers[HEADER])

    kid = _signed_pack(settings)
    key, first = _first_signed_answer(edge, settings, kid, worker)
    assert first.headers[HEADER].endswith(f"; signer={kid}")
    retry = _retried(edge, settings, key)
    assert retry.json() == first.json()
    assert retry.headers[HEADER] == first.headers[HEADER]
