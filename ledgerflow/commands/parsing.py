"""The argument parser's own failures as one line (exit 2), like every other usage error."""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

from ledgerflow.commands.failures import USAGE
from ledgerflow.contracts.ids import ID_CHARACTERS, is_id


class OneLineParser(argparse.ArgumentParser):
    """``ledgerflow token: the following arguments are required: --tenant (see `… --help`)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


DEBUG_HELP = "print the traceback of a failure, and let the Kafka client log its connection attempts"


def add_debug(p: argparse.ArgumentParser) -> None:
    """``--debug`` after the verb as well as before it (SUPPRESS: the verb's parser never resets it)."""
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def positive_int(text: str) -> int:
    """An argparse ``type``: a whole number above zero (``--ttl -5`` is refused by the parser)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number is required, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def nonnegative_int(text: str) -> int:
    """An argparse ``type``: a whole number, zero or more (where 0 means "the default size")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a whole number is required, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number above zero (nan and inf parse as floats but measure nothing)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number is required, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """An argparse ``type``: a finite number, zero or more (where 0 has a meaning: "until Ctrl-C",
    "as fast as possible", "no grace")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number is required, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number, 0 or more, got {text}")
    return value


def seconds_up_to_a_day(text: str) -> float:
    """An argparse ``type``: ``nonnegative_float`` up to 86,400 (a day), the range of the
    environment variable the flag stands for."""
    value = nonnegative_float(text)
    if value > 86_400:
        raise argparse.ArgumentTypeError(f"must be 0 to 86400 seconds (a day), got {text}")
    return value


def tenant_list(text: str) -> str:
    """An argparse ``type``: comma-separated tenant ids, at least one (``--tenants ,`` used to fail
    deep inside the run); returned normalised, as the commands split it."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("at least one tenant is required, e.g. acme,globex")
    wrong = [name for name in names if not is_id(name)]
    if wrong:
        raise argparse.ArgumentTypeError(f"{wrong[0]!r} is not a tenant id: use {ID_CHARACTERS}")
    return ",".join(names)
