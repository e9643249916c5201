"""Dead letters from the faust worker: a record an agent cannot process goes to ``<topic>.dlq``
with its reason, shaped by ``ledgerflow.contracts.deadletters`` so it always fits the
producer's and the broker's size limits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

from ledgerflow.config import Settings
from ledgerflow.contracts.codec import decode_dead_letter, encode_dead_letter
from ledgerflow.contracts.deadletters import headers_of, shape_dead_letter
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.errors import DecodeError
from ledgerflow.kafka.logs import read_topic
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


class KafkaDeadLetterLog(DeadLetterSink):
    """A ``DeadLetterSink`` that reads its DLQ back (``ports.DeadLetterLog``): each source topic has
    a one-partition ``<topic>.dlq`` kept for ever, read to its end at call time."""

    def __init__(self, app: faust.App, settings: Settings, agent: str) -> None:
        super().__init__(app, agent)
        self._settings = settings

    async def dead_lettered(self, source_topic: str, partitions: AbstractSet[int]) -> dict[int, set[int]]:
        found: dict[int, set[int]] = {p: set() for p in partitions}
        async for raw in read_topic(self._settings, dlq_of(source_topic)):
            try:
                letter = decode_dead_letter(raw.value or b"")
            except DecodeError:
                continue  # not a letter: it names no record (the dlq tool reports it)
            if letter.source_topic == source_topic and letter.partition in found:
                found[letter.partition].add(letter.offset)
        return found
