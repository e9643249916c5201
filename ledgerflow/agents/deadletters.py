"""Dead letters: a record an agent cannot decode goes to ``<topic>.dlq`` with its reason."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import faust

from ledgerflow.contracts.codec import encode_dead_letter, reason_code
from ledgerflow.contracts.payloads import DeadLetter
from ledgerflow.metrics import DEAD_LETTERS
from ledgerflow.topics import dlq_of


def dead_letter_of(message: Any, reason: str, agent: str, base_topic: str) -> DeadLetter:
    """The dead letter for a faust ``Message`` (original key, value, headers and position)."""
    return DeadLetter(
        source_topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value or b"",
        headers=tuple(_headers(message.headers)),
        reason=reason,
        reason_code=reason_code(reason),
        failed_at=time.time_ns() // 1000,
        agent=agent,
    )


def _headers(headers: Any) -> Iterable[tuple[str, bytes | None]]:
    items = headers.items() if hasattr(headers, "items") else (headers or ())
    for key, value in items:
        yield (key.decode() if isinstance(key, bytes) else str(key)), value


class DeadLetterSink:
    """Writes dead letters with the worker's producer and waits for the broker's ack."""

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
            DEAD_LETTERS.labels(self._agent, letter.source_topic, letter.reason_code).inc()
