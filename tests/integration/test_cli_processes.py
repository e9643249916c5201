"""``serve`` and ``worker`` say where they listen; a worker's log is clean (no escape codes, no
WARNING/ERROR on a normal start) and its faust data is under the state directory; ``stack
status`` sees an edge and a worker started by hand."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from ledgerflow.config import Settings
from ledgerflow.demo import child_env
from tests.integration.clikit import run_cli
from tests.support.processes import free_port, start, wait_http_ready


def _wait_for(path: Path, text: str, timeout: float = 90.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        if text in content:
            return content
        time.sleep(0.3)
    raise AssertionError(f"{text!r} not in {path}:\n{content}")


def test_hand_started_edge_and_worker_announce_themselves_and_stack_status_sees_them(
    settings: Settings, log_dir: Path, tmp_path: Path
) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    at = settings.with_overrides(http=f"127.0.0.1:{free_port()}")
    edge = start(at, "edge", "serve", log_dir=log_dir)
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:  # not a terminal, started from another directory
        worker = subprocess.Popen(
            [sys.executable, "-m", "ledgerflow.cli", "worker"],
            env=child_env(at) | {"LEDGERFLOW_WORKER_METRICS": metrics, "PYTHONUNBUFFERED": "1"},
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_http_ready(edge, f"http://{at.http}")
        banner = _wait_for(edge.log, "edge listening on")
        assert f"edge listening on http://{at.http} (console http://{at.http}/console/" in banner
        data_dir = at.state_dir / f"{at.topic_prefix}ledgerflow-worker-aux-data"
        text = _wait_for(log, "worker: agents policy, projector, training, usage")
        assert f"metrics at http://{metrics}/metrics" in text
        deadline = time.monotonic() + 60
        while not data_dir.is_dir() and time.monotonic() < deadline:
            time.sleep(0.3)
        assert data_dir.is_dir(), sorted(p.name for p in at.state_dir.iterdir())
        assert not list(tmp_path.glob("*-data")), "faust data left in the working directory"

        status = run_cli(at, "stack", "status", "--json", env={"LEDGERFLOW_WORKER_METRICS": metrics})
        assert status.code == 0, status.err
        seen = json.loads(status.out)["answering"]
        assert seen == {"edge": f"http://{at.http}", "worker_metrics": f"http://{metrics}/metrics"}
        human = run_cli(at, "stack", "status", env={"LEDGERFLOW_WORKER_METRICS": metrics}).out
        assert f"running (started by hand; answers at http://{at.http})" in human
        assert f"running (started by hand; answers at http://{metrics}/metrics)" in human
        time.sleep(3)  # let the agents settle: a normal start must stay quiet
    finally:
        worker.terminate()
        worker.wait(30)
        edge.stop()
    text = log.read_text(errors="replace")
    assert "\x1b" not in text, "terminal escape codes in a non-terminal log"
    assert "[ERROR]" not in text and "[WARNING]" not in text, text


def test_status_without_them_says_not_running(settings: Settings) -> None:
    at = settings.with_overrides(http=f"127.0.0.1:{free_port()}")
    ran = run_cli(at, "stack", "status", env={"LEDGERFLOW_WORKER_METRICS": f"127.0.0.1:{free_port()}"})
    lines = {line.split()[0]: line for line in ran.out.splitlines()}
    assert lines["edge"].endswith("not running") and lines["worker"].endswith("not running")
