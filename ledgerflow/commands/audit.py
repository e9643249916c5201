"""``ledgerflow audit`` exit codes: 0 clean, 1 discrepancies (the audit's answer), 3 could not run.

The audit keeps 1 for "discrepancies found" (scripts test for it); a service that does not
answer is therefore 3, not the CLI-wide 1 (docs/cli.md).
"""

from __future__ import annotations

import os

from ledgerflow.commands.failures import one_line
from ledgerflow.commands.parsing import stderr
from ledgerflow.commands.preflight import require_redis
from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError

COULD_NOT_RUN = 3


def audit(settings: Settings, *, json_out: str | None, skip_projections: bool, quiet: bool) -> int:
    from ledgerflow.audit.cli import audit_cli, check_environment, check_report_path

    check_report_path(json_out)  # a report that cannot be written: one line, exit 2, nothing read
    check_environment(os.environ, not skip_projections)  # a bad variable: one line, exit 2, nothing read
    try:
        if not skip_projections:  # before the log replay, not after it
            require_redis(settings)
        return audit_cli(settings, json_out=json_out, skip_projections=skip_projections, quiet=quiet)
    except InfrastructureError as exc:
        stderr(one_line(exc) + " (the audit did not run)")
        return COULD_NOT_RUN
