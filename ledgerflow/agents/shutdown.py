"""The Kafka clients a worker's agents keep open, closed when the worker stops.

The agents have no stop of their own: their output logs (``agents/output.py``,
``agents/keyedlog.py``) and the policy agent's reference data (``kafka/reference.py``) were left
open until the process ended ("Unclosed AIOKafkaConsumer/Producer", and the fenced writers' open
transactions left to time out instead of committed). Each is closed by faust's
``on_before_shutdown``, which ``App.on_stop`` sends when the worker stops, as
``app.input_log`` closes the input logs' consumer; a client closed so refuses later use instead of
opening connections again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

log = logging.getLogger(__name__)

Close = Callable[[], Awaitable[None]]


def close_at_shutdown(app: faust.App, name: str, *closes: Close) -> None:
    """Await each of ``closes`` when ``app`` stops, in order; one that fails is logged (``name``:
    the agent's) and the others are still closed."""

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # faust's Signal declares only ``*args``
    async def close(sender: Any, **kwargs: Any) -> None:
        for each in closes:
            try:
                await each()
            except Exception as exc:  # the process is ending: the next owner fences what was left
                log.warning("%s: closing a Kafka client at shutdown failed (%r)", name, exc)
