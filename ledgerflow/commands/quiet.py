"""Client-library log noise on the command line.

aiokafka logs every failed connection attempt at ERROR ("Unable connect to …") before the
error we turn into one sentence reaches the user; on the command line that line is noise.
A long-running process (worker, edge) hands the loggers back once its services answer.
"""

from __future__ import annotations

import logging

NOISY = ("aiokafka",)


def hush_clients() -> None:
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def unhush_clients() -> None:
    for name in NOISY:
        logging.getLogger(name).setLevel(logging.NOTSET)
