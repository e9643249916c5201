"""``ledgerflow audit``: replay the logs, verify, re-derive, rebuild, diff; report; exit code.

Exit codes: 0 — no discrepancy; 1 — at least one (the report names each with its
topic/partition/offset); 3 — the audit could not run (Kafka or Redis unreachable:
``ledgerflow.commands.audit`` turns the ``InfrastructureError`` into 3).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TextIO

from ledgerflow.audit.logchecks import ProgressFactory, audit_logs, grace_from
from ledgerflow.audit.projections import audit_projections, run_both
from ledgerflow.audit.report import Report, summary, to_json
from ledgerflow.commands.progress import Update, bar
from ledgerflow.config import Settings
from ledgerflow.errors import ValidationError
from ledgerflow.projections.abandoned import lease_from
from ledgerflow.projections.parallel import processes_from
from ledgerflow.usage.settings import window_config_from

CLEAN, DISCREPANCY = 0, 1


async def run_audit(
    settings: Settings,
    *,
    projections: bool = True,
    progress: bool | None = None,
    grace_s: float | None = None,
) -> Report:
    """Every check of the topics of ``settings.topic_prefix`` (and its live read models).

    ``progress``: True forces the progress bar on stderr, False hides it, None draws it on a
    terminal and writes plain lines every few seconds otherwise (``bars``). ``grace_s``: a
    turn or training command older than this (record timestamp, before the audit started)
    must have its decision or outcome; None: ``LEDGERFLOW_AUDIT_GRACE_S``, default 60.
    """
    began = time.perf_counter()
    check_environment(os.environ, projections)
    report = Report()
    bar = bars(progress)
    if projections:  # the read-model rebuild runs in worker processes meanwhile
        models = Report()
        # Both finish before this returns, also when interrupted: asyncio.gather returned as soon as
        # one was cancelled, and asyncio.run then cancelled the read-model audit again, inside the
        # deletion of its scratch space (Ctrl-C left it in Redis).
        await run_both(
            audit_logs(settings, report, bar, grace_s=grace_s), audit_projections(settings, models, bar)
        )
        report.merge(models)
    else:
        await audit_logs(settings, report, bar, grace_s=grace_s)
    report.seconds = time.perf_counter() - began
    return report


def check_environment(environ: Mapping[str, str], projections: bool = True) -> None:
    """Every variable the audit reads, parsed before a record is read: a bad one is one line
    (ValidationError), not a traceback minutes into the run."""
    grace_from(environ)
    window_config_from(environ)
    if projections:
        processes_from(environ, os.cpu_count())
        lease_from(environ)  # the scratch space's lease


def check_report_path(json_out: str | None) -> None:
    """``--json PATH`` must be a file the report can be written to, checked before a record is
    read: the audit used to run to its end (minutes on a long log), then fail on a missing
    directory with exit 2, its summary and result lost. ValidationError (exit 2) otherwise."""
    if json_out is None or json_out == "-":
        return
    path = Path(json_out)
    if path.is_dir():
        problem = "is a directory: name a file for the report"
    elif not path.parent.is_dir():
        problem = f"there is no directory {path.parent}: create it, or name another path"
    elif not os.access(path if path.exists() else path.parent, os.W_OK):
        problem = "cannot be written here (permissions): name another path"
    else:
        return
    raise ValidationError(f"--json {json_out}: {problem} (the audit did not run)")


def bars(show: bool | None, stream: TextIO | None = None) -> ProgressFactory:
    """The audit's progress, one ``commands.progress.bar`` per phase, as every long verb shows
    it (``show`` True: the terminal bar; None: the bar on a terminal, plain lines otherwise);
    nothing at all when ``show`` is False."""

    def make(label: str, total: int) -> AbstractContextManager[Update]:
        if show is False:
            return nullcontext(_ignore)
        return bar(label, total, stream=stream, tty=show)

    return make


def _ignore(done: int, total: int | None = None) -> None:
    """A progress update nobody draws."""


def audit_cli(
    settings: Settings,
    *,
    json_out: str | None,
    skip_projections: bool,
    quiet: bool,
    progress: bool | None = None,
) -> int:
    """Run the audit; print the summary (stdout, or stderr when the JSON goes to stdout); write
    the JSON report to ``json_out`` (a path, or ``-`` for stdout). ``quiet``: no progress line,
    and no summary when everything is clean. Returns the exit code."""
    report = asyncio.run(
        run_audit(settings, projections=not skip_projections, progress=False if quiet else progress)
    )
    if json_out == "-":
        print(json.dumps(to_json(report), indent=2, ensure_ascii=False))
    elif json_out:
        Path(json_out).write_text(
            json.dumps(to_json(report), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    if not (quiet and report.clean):
        print(summary(report), file=sys.stderr if json_out == "-" else sys.stdout, flush=True)
    return CLEAN if report.clean else DISCREPANCY
