"""Blocking wrappers: the async client runs on a private event loop in a daemon thread.

One loop per wrapper, so a sync caller (a script, a WSGI app, a thread pool) never needs an
event loop of its own, and aiokafka's producer keeps batching in the background between calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from types import TracebackType
from typing import Any, TypeVar, Unpack

from ledgerflow.client.producer import AsyncProducer, EventOptions, ProducerOptions
from ledgerflow.client.records import Published
from ledgerflow.contracts.events import Event
from ledgerflow.contracts.payloads import Payload

T = TypeVar("T")


class LoopThread:
    """An event loop running in a daemon thread; ``run(coro)`` blocks until the coroutine is done."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Producer:
    """``AsyncProducer`` with blocking calls (same arguments); use as ``with Producer(...) as p``."""

    def __init__(self, url: str, **options: Unpack[ProducerOptions]) -> None:
        self._loop = LoopThread("ledgerflow-producer")
        try:
            # Created on the loop: httpx and aiokafka bind to the loop they are made on.
            self._async = self._loop.run(_make(url, options))
            self._loop.run(self._async.start())
        except BaseException:
            self._loop.stop()
            raise

    def event(self, payload: Payload, *, subject: str, **options: Unpack[EventOptions]) -> Event:
        return self._loop.run(self._async.event(payload, subject=subject, **options))

    def publish(self, payload: Payload, *, subject: str, **options: Unpack[EventOptions]) -> Published:
        return self._loop.run(self._async.publish(payload, subject=subject, **options))

    def publish_events(self, events: Iterable[Event]) -> list[Published]:
        return self._loop.run(self._async.publish_events(list(events)))

    def close(self) -> None:
        try:
            self._loop.run(self._async.close())
        finally:
            self._loop.stop()

    def __enter__(self) -> Producer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


async def _make(url: str, options: ProducerOptions) -> AsyncProducer:
    return AsyncProducer(url, **options)
