"""Every failing verb ends with one line saying what is wrong and what to do; exit 2 for usage
and configuration errors, 1 for operational ones (docs/cli.md). The CLI runs as a subprocess."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

from ledgerflow.config import Settings
from tests.integration.clikit import run_cli
from tests.support.processes import free_port

USAGE, OPERATIONAL = 2, 1


@pytest.fixture
def nothing_listens() -> str:
    return f"127.0.0.1:{free_port()}"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_serve_without_redis_is_one_line_naming_the_address_and_the_fix(
    settings: Settings, nothing_listens: str
) -> None:
    ran = run_cli(
        settings,
        "serve",
        env={
            "LEDGERFLOW_REDIS_URL": f"redis://{nothing_listens}/0",
            "LEDGERFLOW_HTTP": f"127.0.0.1:{free_port()}",
        },
    )
    assert ran.code == OPERATIONAL
    line = ran.one_line()
    assert line.startswith(f"ledgerflow: no Redis answers at redis://{nothing_listens}/0")
    assert "`ledgerflow stack up`" in line and "LEDGERFLOW_REDIS_URL / --redis" in line
    assert "Traceback" not in ran.err and "Unclosed" not in ran.err


def test_serve_without_kafka_is_one_line(settings: Settings, nothing_listens: str) -> None:
    ran = run_cli(settings, "serve", "--kafka", nothing_listens, "--http", f"127.0.0.1:{free_port()}")
    assert ran.code == OPERATIONAL
    assert ran.one_line().startswith(f"ledgerflow: no Kafka broker answers at {nothing_listens}")
    assert "Unable connect" not in ran.err


def test_serve_on_a_taken_port_says_so(settings: Settings, taken_port: int) -> None:
    ran = run_cli(settings, "serve", "--http", f"127.0.0.1:{taken_port}")
    assert ran.code == OPERATIONAL
    assert ran.one_line() == (
        f"ledgerflow: 127.0.0.1:{taken_port} is taken (another edge?): stop that process, or listen "
        "elsewhere with --http HOST:PORT / LEDGERFLOW_HTTP"
    )


def test_audit_with_redis_down_is_one_line_before_replaying_anything(
    settings: Settings, nothing_listens: str
) -> None:
    ran = run_cli(settings, "audit", "--redis", f"redis://{nothing_listens}/0")
    assert ran.code == 3  # the audit's own code for "could not run" (1 = discrepancies)
    line = ran.one_line()
    assert line.startswith(f"ledgerflow: no Redis answers at redis://{nothing_listens}/0")
    assert line.endswith("(the audit did not run)")


def test_audit_to_a_report_path_it_cannot_write_is_one_line_before_replaying_anything(
    settings: Settings, nothing_listens: str, tmp_path: Path
) -> None:
    """The old audit ran to its end (here: failed to reach Kafka, exit 3), and only then failed
    on the report's missing directory, its summary lost."""
    report = tmp_path / "no-such-dir" / "report.json"
    ran = run_cli(settings, "audit", "--json", str(report), "--kafka", nothing_listens)
    assert ran.code == USAGE
    assert ran.one_line() == (
        f"ledgerflow: --json {report}: there is no directory {report.parent}: create it, or name another "
        "path (the audit did not run)"
    )
    ran = run_cli(settings, "audit", "--json", str(tmp_path), "--kafka", nothing_listens)
    assert ran.code == USAGE
    assert ran.one_line().endswith("is a directory: name a file for the report (the audit did not run)")


def test_audit_of_a_prefix_without_topics_could_not_run(settings: Settings) -> None:
    """A typo in the prefix: the old audit checked nothing and exited 1 with one discrepancy,
    `projection.incomplete` ("start `ledgerflow worker`")."""
    prefix = "no-such-" + settings.topic_prefix
    ran = run_cli(settings, "audit", "--topic-prefix", prefix)
    assert ran.code == 3, ran.out
    assert ran.one_line() == (
        f"ledgerflow: no topic of the prefix '{prefix}' exists at {settings.kafka_bootstrap} (looked for "
        f"{prefix}conversation.events and the others): check LEDGERFLOW_TOPIC_PREFIX / --topic-prefix "
        "(the audit did not run)"
    )
    assert ran.out == ""


def test_policy_publish_of_a_missing_file_names_it(settings: Settings, tmp_path: Path) -> None:
    ran = run_cli(settings, "policy", "publish", "missing.json", cwd=tmp_path)
    assert ran.code == USAGE
    assert (
        ran.one_line() == "ledgerflow: missing.json: no such file; give the path of a JSON or YAML rule pack"
    )


def test_debug_adds_the_traceback_and_keeps_the_line(settings: Settings, tmp_path: Path) -> None:
    ran = run_cli(settings, "policy", "publish", "missing.json", "--debug", cwd=tmp_path)
    assert ran.code == USAGE
    assert "Traceback (most recent call last)" in ran.err
    assert ran.err_lines[-1].startswith("ledgerflow: missing.json: no such file")


def test_token_with_a_negative_ttl_names_the_flag(settings: Settings) -> None:
    ran = run_cli(settings, "token", "--tenant", "acme", "--ttl", "-5")
    assert ran.code == USAGE
    assert (
        ran.one_line()
        == "ledgerflow token: argument --ttl: must be positive, got -5 (see `ledgerflow token --help`)"
    )
    assert ran.out == ""


def test_stack_up_refuses_bootstrap_and_port_together(settings: Settings, tmp_path: Path) -> None:
    ran = run_cli(
        settings, "stack", "up", env={"LEDGERFLOW_KAFKA_PORT": "29999", "LEDGERFLOW_STATE_DIR": str(tmp_path)}
    )
    assert ran.code == USAGE
    line = ran.one_line()
    assert "LEDGERFLOW_KAFKA_BOOTSTRAP and LEDGERFLOW_KAFKA_PORT are both set" in line and "unset one" in line


def test_stack_up_with_a_named_broker_down_does_not_advise_stack_up(
    settings: Settings, tmp_path: Path, nothing_listens: str
) -> None:
    ran = run_cli(
        settings, "stack", "up", "--kafka", nothing_listens, env={"LEDGERFLOW_STATE_DIR": str(tmp_path)}
    )
    assert ran.code == OPERATIONAL
    line = ran.one_line()
    assert f"no Kafka broker answers at {nothing_listens}" in line
    assert "so `stack up` starts none" in line and "unset LEDGERFLOW_KAFKA_BOOTSTRAP" in line


def test_stack_up_on_a_taken_redis_port_advises_the_port_variable(settings: Settings, tmp_path: Path) -> None:
    taken = urlparse(
        settings.redis_url
    ).port  # the test stack's Redis: a process this state dir did not start
    ran = run_cli(
        settings,
        "stack",
        "up",
        env={"LEDGERFLOW_REDIS_PORT": str(taken), "LEDGERFLOW_STATE_DIR": str(tmp_path)},
        drop=("LEDGERFLOW_REDIS_URL",),
    )
    assert ran.code == OPERATIONAL
    line = ran.err_lines[-1]
    assert line.startswith(
        f"ledgerflow: port {taken} on 127.0.0.1 (Redis) is taken by a process ledgerflow did not start"
    )
    assert "set LEDGERFLOW_REDIS_PORT to a free port" in line


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"LEDGERFLOW_KAFKA_PORT": "abc"}, "ledgerflow: LEDGERFLOW_KAFKA_PORT='abc' is not a port number"),
        (
            {"LEDGERFLOW_REDIS_PORT": "70000"},
            "ledgerflow: LEDGERFLOW_REDIS_PORT='70000' is not a port number",
        ),
        ({"LEDGERFLOW_HTTP": "127.0.0.1:"}, "ledgerflow: LEDGERFLOW_HTTP='127.0.0.1:' is not HOST:PORT"),
    ],
)
def test_a_variable_that_does_not_parse_is_a_configuration_error(
    settings: Settings, env: dict[str, str], expected: str
) -> None:
    ran = run_cli(settings, "stack", "status", env=env)
    assert ran.code == USAGE
    assert ran.one_line().startswith(expected)


def test_unknown_worker_agent_is_a_usage_error_before_any_connection(
    settings: Settings, nothing_listens: str
) -> None:
    ran = run_cli(settings, "worker", "--agents", "policy,nope", "--kafka", nothing_listens)
    assert ran.code == USAGE  # not 1 for the missing broker: the flag is checked first
    assert ran.one_line() == (
        "ledgerflow: --agents: unknown nope; choose from policy, projector, training, usage, models or 'all'"
    )


@pytest.mark.parametrize(
    ("verb", "env"),
    [
        (["worker"], {"LEDGERFLOW_USAGE_WINDOW_S": "nan"}),
        (["worker", "--processes", "2"], {"LEDGERFLOW_USAGE_LATENESS_S": "-1"}),
        (["serve"], {"LEDGERFLOW_AUDIT_DEADLINE_S": "0"}),
        (["serve"], {"LEDGERFLOW_READY_MAX_LAG": "lots"}),
        (["serve"], {"LEDGERFLOW_AUTH_REFUSALS_WINDOW_S": "1.5"}),
        (["serve"], {"LEDGERFLOW_REBUILD_PROCESSES": "0"}),  # POST /v1/audit rebuilds with it
        (["serve"], {"LEDGERFLOW_HEADER_TIMEOUT_S": "0"}),  # no "off": a stalled client would stay
        (["serve"], {"LEDGERFLOW_BODY_TIMEOUT_S": "nan"}),
        (["audit"], {"LEDGERFLOW_AUDIT_GRACE_S": "inf"}),
        (["projections", "rebuild"], {"LEDGERFLOW_REBUILD_PROCESSES": "-3"}),
    ],
    ids=[
        "worker-window",
        "worker-processes-lateness",
        "serve-deadline",
        "serve-lag",
        "serve-refusals",
        "serve-rebuild",
        "serve-header-timeout",
        "serve-body-timeout",
        "audit-grace",
        "rebuild-processes",
    ],
)
def test_a_bad_numeric_variable_is_one_line_before_any_connection(
    settings: Settings, nothing_listens: str, verb: list[str], env: dict[str, str]
) -> None:
    """Kafka and Redis are addresses where nothing listens: the variable is refused before either is
    tried (exit 2, not 1), in one line naming it, its value and what is allowed, with no traceback."""
    nowhere = {
        "LEDGERFLOW_KAFKA_BOOTSTRAP": nothing_listens,
        "LEDGERFLOW_REDIS_URL": f"redis://{nothing_listens}/0",
    }
    ran = run_cli(
        settings, *verb, env=nowhere | {"LEDGERFLOW_HTTP": f"127.0.0.1:{free_port()}"} | env, timeout=60
    )
    ((name, value),) = env.items()
    assert ran.code == USAGE, ran.err
    line = ran.one_line()
    assert line.startswith(f"ledgerflow: {name}={value!r}: ") and "(default " in line, line
    assert "Traceback" not in ran.err + ran.out


def test_parser_errors_are_one_line(settings: Settings) -> None:
    ran = run_cli(settings)
    assert ran.code == USAGE
    assert (
        ran.one_line()
        == "ledgerflow: the following arguments are required: COMMAND (see `ledgerflow --help`)"
    )


def test_version(settings: Settings) -> None:
    from ledgerflow import __version__

    ran = run_cli(settings, "--version")
    assert (ran.code, ran.out.strip()) == (0, f"ledgerflow {__version__}")
