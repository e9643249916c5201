"""A worker's log without noise: no terminal escape codes when the output is not a terminal,
and what every normal start prints at INFO instead of WARNING or ERROR.

faust draws a progress spinner (cursor hide/show escape codes) on its stdout even when that
is a log file. aiokafka logs a group join's expected hiccups (a member id the coordinator
does not know yet, a rebalance in progress, a coordinator still loading) at ERROR or
WARNING; they are retried and resolved inside the client, so they are demoted to INFO.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

# (logger, message pattern) of records that a normal start or rebalance produces.
EXPECTED = (
    (
        "aiokafka.consumer.group_coordinator",
        re.compile(
            r"UnknownMemberId|RebalanceInProgress|NotCoordinator|"
            r"CoordinatorLoadInProgress|GroupCoordinatorNotAvailable|"
            r"IllegalGeneration|rebalanc",
            re.IGNORECASE,
        ),
    ),
    (
        "aiokafka.consumer.fetcher",
        re.compile(r"NotLeaderForPartition|LeaderNotAvailable|UnknownTopicOrPartition"),
    ),
    ("aiokafka.cluster", re.compile(r"Topic .* not found in cluster metadata|LeaderNotAvailable")),
    ("faust.transport.drivers.aiokafka", re.compile(r"rebalanc|Heartbeat failed", re.IGNORECASE)),
)


class Demote(logging.Filter):
    """Turns an expected ERROR/WARNING record into INFO (a handler at WARNING then drops it)."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO and self.pattern.search(record.getMessage()):
            record.levelno, record.levelname = logging.INFO, "INFO"
            return logging.getLogger(record.name).isEnabledFor(logging.INFO)
        return True


def install() -> None:
    for name, pattern in EXPECTED:
        logging.getLogger(name).addFilter(Demote(pattern))


def plain_output(worker: Any) -> None:
    """No spinner unless the worker writes to a terminal (a log file gets no escape codes)."""
    stream = getattr(worker, "stdout", None) or sys.stdout
    if not stream.isatty():
        worker.spinner = None
