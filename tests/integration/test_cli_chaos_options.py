"""``ledgerflow chaos`` refuses a bad option value before it starts anything: exit 2 and one line on
stderr naming the option and what it takes (docs/cli.md). The CLI runs as a subprocess.

Every run gets a ``--state-dir`` below a regular file: a CLI that let a bad value through would
fail to create it at once, instead of booting a private cluster the test would have to clean up.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ledgerflow.chaos.faults import kinds_for
from ledgerflow.config import Settings
from tests.integration.clikit import Ran, run_cli

USAGE = 2
EVERY_KIND = ", ".join(kinds_for(redis_cluster=False))
ON_A_CLUSTER = ", ".join(kinds_for(redis_cluster=True))


def _chaos(stack: Settings, tmp_path: Path, *args: str) -> Ran:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory would go\n")
    return run_cli(
        stack, "chaos", "--duration", "10s", *args, "--state-dir", str(blocker / "state"), timeout=60
    )


REFUSED = [
    (("--rate", "0"), "ledgerflow: --rate must be a positive number of records per second (100), not 0"),
    (("--rate", "-3"), "ledgerflow: --rate must be a positive number of records per second (100), not -3"),
    (("--rate", "nan"), "ledgerflow: --rate must be a positive number of records per second (100), not nan"),
    (("--rate", "inf"), "ledgerflow: --rate must be a positive number of records per second (100), not inf"),
    (
        ("--duration", "garbage"),
        "ledgerflow: --duration 'garbage': a positive number of seconds, or with s, m or h (30m)",
    ),
    (
        ("--duration", "0"),
        "ledgerflow: --duration '0': a positive number of seconds, or with s, m or h (30m)",
    ),
    (("--faults", "meteor"), f"ledgerflow: --faults: unknown kind(s) meteor; the kinds are {EVERY_KIND}"),
    (
        ("--faults", "redis-kill,meteor,comet"),
        f"ledgerflow: --faults: unknown kind(s) meteor, comet; the kinds are {EVERY_KIND}",
    ),
    (
        ("--faults", ""),
        f"ledgerflow: --faults '' names no kind: give one or more of {EVERY_KIND}, or leave it out for all",
    ),
    (
        ("--faults", " , "),
        f"ledgerflow: --faults ' , ' names no kind: give one or more of {EVERY_KIND}, "
        "or leave it out for all",
    ),
    (
        ("--faults", "redis-failover"),
        "ledgerflow: --faults: redis-failover needs a Redis Cluster, and this run has one Redis; "
        f"the kinds are {EVERY_KIND}",
    ),
    (
        ("--redis-cluster", "--faults", "redis-kill,edge-kill"),
        "ledgerflow: --faults: redis-kill needs one Redis, and this run has a Redis Cluster; "
        f"the kinds are {ON_A_CLUSTER}",
    ),
    (("--workers", "0"), "ledgerflow: --workers must be at least 1, not 0"),
]


@pytest.mark.parametrize(("args", "line"), REFUSED, ids=[" ".join(args) for args, _ in REFUSED])
def test_a_bad_option_value_is_one_line_and_starts_nothing(
    stack: Settings, tmp_path: Path, args: tuple[str, ...], line: str
) -> None:
    ran = _chaos(stack, tmp_path, *args)
    assert (ran.code, ran.one_line()) == (USAGE, line)
    assert ran.out == ""  # no report: the run never began
    assert not (tmp_path / "not-a-directory").is_dir()


def test_a_state_dir_below_a_file_is_refused_before_anything_starts(stack: Settings, tmp_path: Path) -> None:
    ran = _chaos(stack, tmp_path)  # every value valid but the state directory, below a file
    blocker = tmp_path / "not-a-directory"
    assert (ran.code, ran.one_line()) == (
        USAGE,
        f"ledgerflow: --state-dir {blocker / 'state'}: {blocker} is a file, not a directory; "
        "name a directory (created if missing)",
    )


def test_a_report_path_that_cannot_be_written_is_refused_before_the_run(
    stack: Settings, tmp_path: Path
) -> None:
    """Written only after the run: without the check a 30-minute run ended with no report."""
    for bad in (tmp_path / "missing" / "report.json", tmp_path):
        ran = _chaos(stack, tmp_path, "--json", str(bad))
        assert (ran.code, ran.one_line()) == (
            USAGE,
            f"ledgerflow: --json {bad}: the report cannot be written there; name a file in an existing, "
            "writable directory",
        )


@pytest.mark.parametrize("args", [("--rate", "abc"), ("--workers", "two"), ("--seed", "x")])
def test_a_value_of_the_wrong_type_is_the_parsers_one_line(
    stack: Settings, tmp_path: Path, args: tuple[str, ...]
) -> None:
    ran = _chaos(stack, tmp_path, *args)
    assert ran.code == USAGE
    assert ran.one_line().startswith(f"ledgerflow chaos: argument {args[0]}: invalid ")
    assert ran.one_line().endswith("(see `ledgerflow chaos --help`)")


def test_help_exits_0_naming_every_option_and_starts_nothing(stack: Settings, tmp_path: Path) -> None:
    ran = _chaos(stack, tmp_path, "--help")
    assert (ran.code, ran.err) == (0, "")
    assert ran.out.startswith("usage: ledgerflow chaos ")
    options = ("--duration", "--seed", "--workers", "--rate", "--faults", "--state-dir", "--json")
    for option in (*options, "--redis-cluster"):
        assert option in ran.out
