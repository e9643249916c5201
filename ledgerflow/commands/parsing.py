"""The argument parser's own failures as one line (exit 2), like every other usage error."""

from __future__ import annotations

import argparse
import math
import sys
from typing import NoReturn

from ledgerflow.commands.failures import USAGE


class OneLineParser(argparse.ArgumentParser):
    """``ledgerflow token: the following arguments are required: --tenant (see `… --help`)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def add_debug(p: argparse.ArgumentParser) -> None:
    """``--debug`` after the verb as well as before it (SUPPRESS: the verb's parser never resets it)."""
    p.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="print the traceback of a failure"
    )


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


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number above zero (nan and inf parse as floats but measure nothing)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number is required, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value
