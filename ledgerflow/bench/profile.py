"""Where a process under test spends its time: py-spy sampling, summarised.

``Sampler(pid, out)`` runs ``py-spy record --format raw`` (collapsed stacks) against a
running process until ``stop()``; ``summarise`` folds the stacks into the share of
samples each function is on the stack for (inclusive) and at the top of (self), which
is what docs/benchmarks.md quotes. py-spy comes with the bench extra; where it is missing or
cannot attach, nothing is sampled.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


class Sampler:
    def __init__(self, pid: int, out: Path, rate: int = 200) -> None:
        self.out = out
        exe = py_spy()
        self._proc = (
            None
            if exe is None
            else subprocess.Popen(
                [
                    exe,
                    "record",
                    "--pid",
                    str(pid),
                    "--format",
                    "raw",
                    "--rate",
                    str(rate),
                    "--nonblocking",
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
        )

    def stop(self) -> Path | None:
        if self._proc is None:
            return None
        self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(5)
        return self.out if self.out.exists() else None


@dataclass(frozen=True, slots=True)
class Hotspot:
    function: str
    inclusive: float  # share of samples with the function anywhere on the stack
    own: float  # share of samples with the function on top


def _frame_name(frame: str) -> str:
    # py-spy raw frames look like "handle (ledgerflow/agents/policy.py:121)"; drop the line.
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    for marker in ("site-packages/", "ledgerflow/", "lib/python3"):
        if marker in path:
            path = path[path.index(marker) :].replace("site-packages/", "")
            break
    return f"{name} ({path})" if path else name


# Where a leaf frame's time goes, by the file it runs in (first match wins).
BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "codec and event records (Avro, envelope, dataclasses)",
        (
            "ledgerflow/contracts/codec",
            "contracts/avrobin",
            "fastavro",
            "contracts/events",
            "contracts/payloads",
            "contracts/registry",
            "_avro_json",
        ),
    ),
    (
        "hash chain (RFC 8785 canonical JSON, SHA-256)",
        ("contracts/chain", "contracts/eventhash", "projections/verify", "rfc8785", "hashlib"),
    ),
    ("policy evaluation", ("ledgerflow/policy/",)),
    ("projection ops (pure)", ("ledgerflow/projections/conversations", "projections/ops", "orjson")),
    (
        "Redis client (packing, parsing, I/O)",
        ("redis/", "ledgerflow/projections/writer", "ledgerflow/redisclient"),
    ),
    # the rebuild's own Python (fresh.py, fold.py, freshwrite.py, rebuild.py, keys.py): before this
    # bucket its frames fell through to the event loop's dispatch and were counted as the loop's
    (
        "projection rebuild (fold, batch loop, write packing)",
        ("ledgerflow/projections/",),
    ),
    ("Kafka client (fetch, produce, protocol)", ("aiokafka/", "kafka/")),
    ("faust/mode stream machinery", ("faust/", "mode/", "venusian", "yarl", "croniter")),
    ("our agent code", ("ledgerflow/agents/", "ledgerflow/bench/naive_agent")),
    ("asyncio event loop and sockets", ("asyncio/", "selectors", "socket", "ssl")),
)
LOOP = BUCKETS[-1][0]
OTHER = "other (interpreter, logging, metrics, ...)"


def bucket_of(frame: str) -> str:
    for name, markers in BUCKETS:
        if any(m in frame for m in markers):
            return name
    return OTHER


def _attribute(raw_frames: list[str]) -> str:
    """The bucket of the innermost frame that belongs to one: a dataclass ``__init__`` or a
    ``uuid5`` counts for the code that called it, a socket write for the client that wrote;
    what runs directly under the event loop's dispatch (``_run_once``) is the loop's own."""
    for frame in reversed(raw_frames):
        if "BaseEventLoop._run_once" in frame:
            return LOOP
        name = bucket_of(frame)
        if name not in (LOOP, OTHER):
            return name
    return OTHER


IDLE = ("EpollSelector.select", "select", "poll", "epoll")
APPARATUS = "_dump_forever"  # the counted worker's own counter thread: not the system's time


def summarise(collapsed: Path, top: int = 25, idle: tuple[str, ...] = IDLE) -> dict[str, Any]:
    """Top functions and buckets by share of the busy samples (not idling in the event loop's
    ``select``, not the benchmark's own counter thread)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    busy = idle_samples = 0
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f) for f in stack.split(";") if f]
        if not frames or APPARATUS in stack:
            continue
        if any(frames[-1].startswith(i) for i in idle):
            idle_samples += count
            continue
        busy += count
        for name in set(frames):
            inclusive[name] += count
        own[frames[-1]] += count
        buckets[_attribute(stack.split(";"))] += count
    total = busy or 1
    rows = [Hotspot(n, c / total, own[n] / total) for n, c in inclusive.most_common(top * 4)]
    by_own = [Hotspot(n, inclusive[n] / total, c / total) for n, c in own.most_common(top)]
    return {
        "busy_samples": busy,
        "idle_samples": idle_samples,
        "buckets": {name: round(c / total, 4) for name, c in buckets.most_common()},
        "inclusive": [_row(r) for r in rows[: top * 2]],
        "own": [_row(r) for r in by_own],
    }


def _row(h: Hotspot) -> dict[str, Any]:
    return {"function": h.function, "inclusive": round(h.inclusive, 4), "own": round(h.own, 4)}
