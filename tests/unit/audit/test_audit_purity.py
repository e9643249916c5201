"""The audit's checks are pure: importing them loads no Kafka, Redis or HTTP client."""

from __future__ import annotations

import subprocess
import sys

PURE = ("chains", "decisions", "training", "digests", "report", "progress", "usage")


def test_pure_check_modules_import_no_io_library() -> None:
    code = (
        "import sys\n"
        + "".join(f"import ledgerflow.audit.{name}\n" for name in PURE)
        + "bad = sorted(m for m in ('aiokafka', 'redis', 'faust', 'httpx', 'starlette') if m in sys.modules)\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"pure audit modules pulled in {out.stdout.strip()}"
