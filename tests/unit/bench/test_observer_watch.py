"""A bench trial whose process under test dies fails at once with its log's tail, instead of
polling for minutes until its timeout (a worker that could not start was waited for 320 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.bench.procs import spawn
from ledgerflow.bench.trials import Observer
from ledgerflow.config import load_settings


def test_an_exited_process_under_test_ends_the_wait_with_its_exit_code_and_log(tmp_path: Path) -> None:
    settings = load_settings()
    child = spawn(settings, "dying", "json.tool", [str(tmp_path / "missing.json")], work_dir=tmp_path)
    child.popen.wait(timeout=30)
    observer = Observer(settings, "pipeline", [child])
    with pytest.raises(RuntimeError) as caught:
        observer._check_alive()
    assert f"dying exited with {child.popen.returncode}" in str(caught.value)
    assert "missing.json" in str(caught.value)  # the tail of its log says why


def test_a_running_process_under_test_does_not_end_the_wait(tmp_path: Path) -> None:
    settings = load_settings()
    sleep = ["-n", "1", "import time; time.sleep(30)"]
    child = spawn(settings, "sleeper", "timeit", sleep, work_dir=tmp_path)
    try:
        Observer(settings, "pipeline", [child])._check_alive()  # no exception
    finally:
        child.popen.kill()
        child.popen.wait(timeout=30)
