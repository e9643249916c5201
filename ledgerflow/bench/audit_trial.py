"""``ledgerflow audit`` over the topics a pipeline trial filled, in its own process (figure 11):

    python -m ledgerflow.bench.audit_trial

The audit of ``LEDGERFLOW_TOPIC_PREFIX`` exactly as ``ledgerflow audit`` runs it (every log
check, and the read-model rebuild and diff against the trial's live read models), timed
from start to report. Its rate is the records of the projected logs (``conversation.events``,
``policy.decisions``, ``training.audit``, ``usage.windows``: the records the raw consume of
figure 2 reads) ÷ those seconds; the baseline is that raw consume, in the same round.
Prints ``{"result": {"records", "seconds", "rate", "cpu_s", "clean", "discrepancies"}}``.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from ledgerflow import gcpolicy
from ledgerflow.audit.cli import run_audit
from ledgerflow.bench.procs import emit, own_cpu_seconds, spawn
from ledgerflow.config import Settings, load_settings
from ledgerflow.projections.rebuild import end_offsets


async def audit(settings: Settings) -> dict[str, Any]:
    records = sum((await end_offsets(settings)).values())
    emit(started=True)
    cpu0, began = own_cpu_seconds(), time.perf_counter()
    report = await run_audit(settings, projections=True, progress=False)
    took, cpu = time.perf_counter() - began, own_cpu_seconds() - cpu0
    found = {"clean": report.clean, "discrepancies": report.total}
    return found | {"records": records, "seconds": took, "rate": records / max(took, 1e-9), "cpu_s": cpu}


async def audit_trial(settings: Settings, work_dir: Path) -> dict[str, Any]:
    """Run the audit of ``settings.topic_prefix`` in a child process; its result."""
    child = spawn(settings, "audit", "ledgerflow.bench.audit_trial", [], work_dir=work_dir)
    result: dict[str, Any] = await asyncio.to_thread(child.result, 600.0)
    return result


def main() -> None:
    gcpolicy.tune()  # as `ledgerflow audit` (ledgerflow/cli.py)
    emit(result=asyncio.run(audit(load_settings())))


if __name__ == "__main__":
    main()
