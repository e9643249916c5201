"""``ledgerflow training enable|disable|status`` as a subprocess, with a real worker deciding."""

from __future__ import annotations

import json
import time

from ledgerflow.config import Settings
from tests.integration.clikit import Ran, run_cli
from tests.support.processes import Process


def _status_until(settings: Settings, state: str, timeout: float = 30.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        ran = run_cli(settings, "training", "status", "--tenant", "acme", "--json")
        assert ran.code == 0, ran.err
        found: dict[str, object] = json.loads(ran.out)
        if found["state"] == state or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _training(settings: Settings, *args: str) -> Ran:
    return run_cli(settings, "training", *args, "--tenant", "acme", "--actor", "ops-alice", "--wait", "30")


def test_enable_status_refusal_disable(settings: Settings, worker: Process) -> None:
    before = run_cli(settings, "training", "status", "--tenant", "acme")
    assert (before.code, before.out.strip()) == (0, "tenant acme: training disabled (version 0)")

    enabled = _training(settings, "enable", "--reason", "red-team exercise", "--ttl", "3600", "--json")
    assert enabled.code == 0, enabled.err
    answer = json.loads(enabled.out)
    assert (answer["outcome"], answer["accepted"], answer["version"]) == ("TrainingEnabled", True, 1)
    assert answer["expires_at"].endswith("Z") and answer["expires_at"][19] == "."  # RFC 3339 with µs

    status = _status_until(settings, "enabled")
    assert (status["owner"], status["reason"], status["version"]) == ("ops-alice", "red-team exercise", 1)
    assert status["expires_at"] == answer["expires_at"]
    pretty = run_cli(settings, "training", "status", "--tenant", "acme").out.strip()
    assert pretty.startswith("tenant acme: training enabled (version 1) by ops-alice: 'red-team exercise'")

    stale = _training(settings, "disable", "--reason", "done", "--expected-version", "0")
    assert stale.code == 2
    assert stale.one_line().startswith("ledgerflow: command rejected: ")

    disabled = _training(settings, "disable", "--reason", "exercise finished")
    assert disabled.code == 0, disabled.err
    assert disabled.out.strip().startswith("TrainingDisabled (version ")
    assert _status_until(settings, "disabled")["state"] == "disabled"


def test_usage_errors_are_caught_before_anything_is_published(settings: Settings) -> None:
    no_reason = run_cli(settings, "training", "enable", "--tenant", "acme")
    assert no_reason.code == 2
    assert no_reason.one_line() == (
        "ledgerflow: training enable needs --reason TEXT (it goes into the audit log)"
    )
    ttl_on_disable = run_cli(
        settings, "training", "disable", "--tenant", "acme", "--reason", "x", "--ttl", "5"
    )
    assert (
        ttl_on_disable.code == 2
        and ttl_on_disable.one_line() == "ledgerflow: --ttl applies to training enable only"
    )
    bad_ttl = run_cli(settings, "training", "enable", "--tenant", "acme", "--reason", "x", "--ttl", "0")
    assert bad_ttl.code == 2 and "--ttl: must be positive" in bad_ttl.one_line()


def test_without_a_worker_the_command_says_it_is_pending(settings: Settings) -> None:
    ran = run_cli(settings, "training", "enable", "--tenant", "acme", "--reason", "x", "--wait", "1")
    assert ran.code == 1
    line = ran.one_line()
    assert "published, but no outcome within 1 s: is a worker running?" in line
    assert "`ledgerflow training status --tenant acme`" in line
