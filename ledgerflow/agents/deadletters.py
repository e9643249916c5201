"""Dead letters from the faust worker: a record an agent cannot process goes to ``<topic>.dlq``
with its reason, shaped by ``ledgerflow.contracts.deadletters`` so it always fits the
producer's and the broker's size limits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ledgerflow.contracts.codec import encode_dead_letter
from ledgerflow.contracts.deadletters import headers_of, shape_dead_letter
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.metrics import DEAD_LETTERS, reason_label
from ledgerflow.topics import dlq_of

if TYPE_CHECKING:
    import faust

log = logging.getLogger(__name__)


def dead_letter_of(message: Any, reason: str, agent: str, base_topic: str = "") -> DeadLetter:
    """The dead letter for a faust ``Message`` or a ``logs.RawRecord`` (same attributes)."""
    return shape_dead_letter(
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=headers_of(message.headers),
        reason=reason,
        agent=agent,
        failed_at=time.time_ns() // 1000,
    )


class DeadLetterSink:
    """Writes dead letters with the worker's producer and waits for the broker's ack.

    Raises what the producer raises (the caller retries the whole batch): a batch's
    other effects are written only after its dead letters were acknowledged.
    """

    def __init__(self, app: faust.App, agent: str) -> None:
        self._app = app
        self._agent = agent

    async def send_all(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        producer = self._app.producer
        futures = []
        for letter in letters:
            futures.append(
                await producer.send(
                    dlq_of(letter.source_topic),
                    letter.key,
                    encode_dead_letter(letter),
                    None,
                    None,
                    None,
                )
            )
        await producer.flush()
        for fut, letter in zip(futures, letters, strict=True):
            await fut
            DEAD_LETTERS.labels(self._agent, letter.source_topic, reason_label(letter.reason_code)).inc()
            log.warning(
                "%s: dead-lettered %s[%d]@%d (%d bytes): %s",
                self._agent,
                letter.source_topic,
                letter.partition,
                letter.offset,
                letter.value_size or 0,
                letter.reason[:200],
            )
