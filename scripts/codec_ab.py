"""Side-by-side CPU cost of the codec and chain-hash steps: an old commit against this checkout.

    python scripts/codec_ab.py [OLD_COMMIT] [N]      # default 1ce3892 (before the compiled codec), 3000

Extracts OLD_COMMIT's ``ledgerflow`` package into a temporary directory as ``ledgerflow_old``
(imports rewritten), then times each step in alternating rounds, old then new, in this one
process: thread CPU time over N calls, the minimum of 7 rounds per side. Alternating rounds
and CPU time keep the ratio meaningful on a VM shared with other jobs.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
ROUNDS = 7


def extract(commit: str, into: Path) -> None:
    """``ledgerflow/`` and ``schemas/`` of ``commit``; the package renamed ``ledgerflow_old``."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit, "ledgerflow", "schemas"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    (into / "ledgerflow").rename(into / "ledgerflow_old")
    for path in (into / "ledgerflow_old").rglob("*.py"):
        text = re.sub(r"\b(from|import) ledgerflow\b", r"\1 ledgerflow_old", path.read_text(encoding="utf-8"))
        text = text.replace('resources.files("ledgerflow") / "schemas"', f'Path("{into / "schemas"}")')
        path.write_text(text.replace('"ledgerflow.', '"ledgerflow_old.'), encoding="utf-8")


def steps(root: str) -> dict[str, Callable[[], Any]]:
    def load(name: str) -> ModuleType:
        return __import__(f"{root}.{name}", fromlist=["_"])

    codec, wire_mod = load("contracts.codec"), load("policy.wire")
    pack, training = load("kafka.reference").builtin_default_pack(), load("policy").TrainingState(False, 0)
    verify = load("projections.verify")
    turn = load("bench.codec").sample_event()
    wire = codec.encode(turn)
    decision = wire_mod.decide(turn, wire, pack, training, None)
    decision_wire = codec.encode(decision)
    return {
        "decode turn": lambda: codec.decode(wire),
        "encode turn": lambda: codec.encode(turn),
        "encode decision": lambda: codec.encode(decision),
        "decode decision (v1)": lambda: codec.decode(decision_wire),
        "decide incl. chain": lambda: wire_mod.decide(turn, wire, pack, training, None),
        "integrity_problem": lambda: verify.integrity_problem(decision),
    }


def per_call_us(fn: Callable[[], Any], n: int) -> float:
    start = time.thread_time_ns()
    for _ in range(n):
        fn()
    return (time.thread_time_ns() - start) / n / 1000


def main() -> None:
    commit = sys.argv[1] if len(sys.argv) > 1 else "1ce3892"
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    with tempfile.TemporaryDirectory() as tmp:
        extract(commit, Path(tmp))
        sys.path.insert(0, tmp)
        old, new = steps("ledgerflow_old"), steps("ledgerflow")
        print(f"| step | {commit} µs | this checkout µs | new ÷ old |")
        print("|---|---:|---:|---:|")
        for name in new:
            rounds = [(per_call_us(old[name], n), per_call_us(new[name], n)) for _ in range(ROUNDS)]
            before, after = min(r[0] for r in rounds), min(r[1] for r in rounds)
            print(f"| {name} | {before:.2f} | {after:.2f} | {after / before:.2f} |")


if __name__ == "__main__":
    main()
