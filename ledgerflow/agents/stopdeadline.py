"""A stopping worker exits within ``STOP_DEADLINE_S``, whatever faust or aiokafka wait for.

On SIGTERM or SIGINT faust's worker stops its services one by one; a Kafka client closing
against a broker that stopped answering (a fetch retrying, a LeaveGroup without a coordinator)
can keep that going for as long as the broker stays silent. A worker orphaned by a SIGKILLed
supervisor (``worker --processes N``) would then live on, holding its group membership. The
design does not need a clean stop: every decision and projection survives a SIGKILL (fences,
chained logs, offsets committed only after the writes), so a stop that takes longer than the
deadline ends the process the way a SIGKILL would, after one log line.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import faust

STOP_DEADLINE_S = 30.0
EXIT_CODE = 1

log = logging.getLogger(__name__)


def arm(deadline_s: float, exit_now: Callable[[int], Any] = os._exit) -> threading.Timer:
    """Start a daemon timer that ends the process with ``EXIT_CODE`` after ``deadline_s``."""

    def expire() -> None:
        log.error("worker: stopping took over %.0f s; exiting without finishing the stop", deadline_s)
        for handler in logging.getLogger().handlers:
            handler.flush()
        exit_now(EXIT_CODE)

    timer = threading.Timer(deadline_s, expire)
    timer.daemon = True
    timer.start()
    return timer


class Worker(faust.Worker):
    """faust's worker whose first stop signal also arms the deadline."""

    _deadline: threading.Timer | None = None

    def _schedule_shutdown(self, signal: Any) -> None:
        if self._deadline is None:
            self._deadline = arm(STOP_DEADLINE_S)
        super()._schedule_shutdown(signal)
