"""The verbs' flags as docs/cli.md lists them, parsed without running anything (no I/O)."""

from __future__ import annotations

import pytest

from ledgerflow.cli import build_parser
from ledgerflow.commands import envflags


@pytest.mark.parametrize("count", ["0", "-5", "two"])
def test_produce_refuses_a_count_that_is_not_positive_before_connecting(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``produce --count -5`` used to be taken: the run then waited for a broker and published nothing."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["produce", "--count", count])
    assert stopped.value.code == 2
    assert "argument --count" in capsys.readouterr().err


@pytest.mark.parametrize("seconds", ["-1", "86401", "1e9", "inf", "soon"])
def test_produce_retry_for_takes_the_range_of_its_variable(
    seconds: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--retry-for`` stands for LEDGERFLOW_PRODUCE_RETRY_S (0 to 86400 s); it took any number."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(["produce", "--retry-for", seconds])
    assert stopped.value.code == 2
    assert "argument --retry-for" in capsys.readouterr().err
    assert build_parser().parse_args(["produce", "--retry-for", "86400"]).retry_for == 86_400


@pytest.mark.parametrize("verb", [["policy", "list"], ["audit"]])
def test_verbs_that_read_the_dev_policy_keys_take_state_dir(verb: list[str]) -> None:
    """``policy`` (the dev policy key, the default trust store) and ``audit`` (the trust store it
    checks signatures against) read the state dir: ``--state-dir`` overrides LEDGERFLOW_STATE_DIR there
    as on the other verbs that read it."""
    args = build_parser().parse_args([*verb, "--state-dir", "/tmp/elsewhere"])
    env: dict[str, str] = {}
    envflags.apply(args, env)
    assert env == {"LEDGERFLOW_STATE_DIR": "/tmp/elsewhere"}


@pytest.mark.parametrize(
    "argv", [["bench", "--runs", "0"], ["bench", "--runs", "-3"], ["bench", "--events", "-5"]]
)
def test_bench_refuses_no_rounds_and_a_negative_backlog(argv: list[str]) -> None:
    """``--runs 0`` used to run one round anyway (the plan took ``max(runs, 1)``), and ``--events -5``
    planned a backlog of -5 events."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args(argv)
    assert stopped.value.code == 2


def test_bench_takes_events_zero_as_the_default_backlog() -> None:
    assert build_parser().parse_args(["bench", "--events", "0", "--runs", "1"]).events == 0


@pytest.mark.parametrize("verb", [["produce"], ["policy", "list"], ["policy", "publish", "pack.json"]])
def test_verbs_that_never_touch_redis_refuse_redis(
    verb: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """``produce`` and ``policy`` talk to Kafka only: they took ``--redis`` and ignored it."""
    with pytest.raises(SystemExit) as stopped:
        build_parser().parse_args([*verb, "--redis", "redis://elsewhere:6379/0"])
    assert stopped.value.code == 2
    assert "--redis" in capsys.readouterr().err


@pytest.mark.parametrize("verb", [["worker"], ["serve"], ["audit"], ["projections", "rebuild"]])
def test_verbs_that_use_redis_take_redis(verb: list[str]) -> None:
    assert build_parser().parse_args([*verb, "--redis", "redis://elsewhere:6379/0"]).redis == (
        "redis://elsewhere:6379/0"
    )
