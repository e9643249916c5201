"""``ledgerflow chaos --duration 30m --seed N``: one run on a private cluster, its report at the end."""

from __future__ import annotations

import json
import math
import os
import random
import re
import signal
import sys
from pathlib import Path

from ledgerflow.chaos.faults import KINDS, kinds_for
from ledgerflow.chaos.report import lines
from ledgerflow.chaos.run import ChaosConfig, run
from ledgerflow.errors import ValidationError

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1.5h`` → seconds."""
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if found is None or float(found.group(1)) <= 0:
        raise ValidationError(f"--duration {text!r}: a positive number of seconds, or with s, m or h (30m)")
    return float(found.group(1)) * UNITS[found.group(2) or "s"]


def parse_kinds(text: str | None, redis_cluster: bool = False) -> tuple[str, ...]:
    """``--faults a,b`` → the kinds; absent → every kind that applies to the run's Redis."""
    allowed = kinds_for(redis_cluster)
    if text is None:
        return allowed
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    if not kinds:  # `--faults ""` is a mistake, not "every kind": leaving the flag out says that
        raise ValidationError(
            f"--faults {text!r} names no kind: give one or more of {', '.join(allowed)}, "
            "or leave it out for all"
        )
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValidationError(
            f"--faults: unknown kind(s) {', '.join(unknown)}; the kinds are {', '.join(allowed)}"
        )
    # a kind for the other Redis topology would only fail at its first slot, minutes into the run
    elsewhere = [k for k in kinds if k not in allowed]
    if elsewhere:
        needs = (
            "one Redis, and this run has a Redis Cluster"
            if redis_cluster
            else "a Redis Cluster, and this run has one Redis"
        )
        raise ValidationError(
            f"--faults: {', '.join(elsewhere)} needs {needs}; the kinds are {', '.join(allowed)}"
        )
    return kinds


def parse_rate(rate: float) -> float:
    """``--rate``: records per second; nan and inf parse as floats but pace nothing."""
    if not math.isfinite(rate) or rate <= 0:
        raise ValidationError(f"--rate must be a positive number of records per second (100), not {rate:g}")
    return rate


def parse_state_dir(text: str | None) -> Path | None:
    """``--state-dir``: a directory, created if missing; a file on its path would stop the run only
    once it begins to write there, so it is refused first."""
    if not text:
        return None
    path = Path(text).resolve()
    there = next(p for p in (path, *path.parents) if p.exists())
    if not there.is_dir():
        raise ValidationError(
            f"--state-dir {text}: {there} is a file, not a directory; name a directory (created if missing)"
        )
    return path


def check_report_path(text: str | None) -> None:
    """``--json``: written after the run, so a path it cannot be written to is refused before it."""
    if text is None:
        return
    path = Path(text).resolve()
    if path.is_dir() or not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise ValidationError(
            f"--json {text}: the report cannot be written there; name a file in an existing, "
            "writable directory"
        )


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def chaos_cli(
    duration: str,
    seed: int | None,
    workers: int,
    rate: float,
    faults: str | None,
    state_dir: str | None,
    json_out: str | None,
    redis_cluster: bool = False,
) -> int:
    if workers < 1:
        raise ValidationError(f"--workers must be at least 1, not {workers}")
    check_report_path(json_out)
    config = ChaosConfig(
        duration_s=parse_duration(duration),
        seed=seed if seed is not None else random.randrange(1 << 31),
        workers=workers,
        rate=parse_rate(rate),
        kinds=parse_kinds(faults, redis_cluster),
        redis_cluster=redis_cluster,
        state_dir=parse_state_dir(state_dir),
    )
    # SIGTERM (`timeout`, systemd, a cancelled CI job) ends the run as Ctrl-C does, through the
    # clean-up that stops the private cluster: by default the run died at once and left its three
    # brokers and its Redis (or six Redis Cluster nodes) running (the workers and edges die with it,
    # PR_SET_PDEATHSIG)
    previous = signal.signal(signal.SIGTERM, _interrupted)
    try:
        report = run(config, say)
    finally:
        signal.signal(signal.SIGTERM, previous)
    print("\n".join(lines(report)), flush=True)
    if json_out:
        Path(json_out).write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
    return 0 if report.passed else 1
