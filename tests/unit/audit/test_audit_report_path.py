"""`ledgerflow audit --json PATH`: a path the report cannot be written to is refused before a
record is read (the audit used to run to its end, then fail, its result lost)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.audit.cli import check_report_path
from ledgerflow.errors import ValidationError


def test_stdout_no_report_and_a_writable_file_pass(tmp_path: Path) -> None:
    check_report_path(None)
    check_report_path("-")
    check_report_path(str(tmp_path / "report.json"))  # a new file
    (tmp_path / "old.json").write_text("{}")
    check_report_path(str(tmp_path / "old.json"))  # overwritten


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"there is no directory .*no-such-dir: create it"):
        check_report_path(str(tmp_path / "no-such-dir" / "report.json"))


def test_a_directory_is_not_a_report_file(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="is a directory: name a file for the report"):
        check_report_path(str(tmp_path))
