"""How a failed verb ends (pure): the exit code and the one line."""

from __future__ import annotations

import argparse

import pytest

from ledgerflow.commands.failures import DEBUG_HINT, exit_code, one_line
from ledgerflow.commands.parsing import positive_int
from ledgerflow.commands.stack import contradictions
from ledgerflow.config import host_port, load_settings
from ledgerflow.errors import AuthError, InfrastructureError, NotFound, StackError, ValidationError


class KafkaConnectionError(Exception):  # the client library's name is what counts
    pass


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ValidationError("bad pack"), 2),
        (AuthError("no"), 2),
        (FileNotFoundError(2, "No such file or directory", "x.json"), 2),
        (InfrastructureError("Redis down"), 1),
        (StackError("port taken"), 1),
        (NotFound("no dead letter at offset 99"), 1),  # as `dlq show` of a missing offset
        (KafkaConnectionError("no broker"), 1),
        (RuntimeError("bug"), 1),
        (KeyboardInterrupt(), 130),
    ],
)
def test_exit_codes(exc: BaseException, code: int) -> None:
    assert exit_code(exc) == code


def test_our_errors_print_their_message_on_one_line() -> None:
    assert one_line(StackError("kafka exited:\n  last line")) == "ledgerflow: kafka exited: last line"


def test_a_file_error_names_the_file_not_the_errno() -> None:
    exc = FileNotFoundError(2, "No such file or directory", "x.json")
    assert one_line(exc) == "ledgerflow: x.json: No such file or directory"


def test_a_network_error_of_a_client_library_points_at_the_stack() -> None:
    line = one_line(KafkaConnectionError("Unable to bootstrap"))
    assert line == (
        "ledgerflow: a service did not answer (KafkaConnectionError: Unable to bootstrap); "
        "check `ledgerflow stack status`"
    )


def test_an_unexpected_error_names_its_type_and_the_debug_flag() -> None:
    assert one_line(KeyError("k")) == f"ledgerflow: unexpected KeyError: 'k' ({DEBUG_HINT})"
    assert one_line(KeyError("k"), debug=True) == "ledgerflow: unexpected KeyError: 'k'"


@pytest.mark.parametrize("text", ["-5", "0", "x", "1.5", ""])
def test_positive_int_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        positive_int(text)


def test_positive_int_accepts() -> None:
    assert positive_int("3600") == 3600


def test_bootstrap_and_port_together_contradict_each_other() -> None:
    found = contradictions({"LEDGERFLOW_KAFKA_BOOTSTRAP": "h:1", "LEDGERFLOW_KAFKA_PORT": "2"})
    assert len(found) == 1 and found[0].startswith("LEDGERFLOW_KAFKA_BOOTSTRAP and LEDGERFLOW_KAFKA_PORT")
    assert contradictions({"LEDGERFLOW_REDIS_URL": "redis://h", "LEDGERFLOW_REDIS_PORT": "1"})[0].startswith(
        "LEDGERFLOW_REDIS_URL and LEDGERFLOW_REDIS_PORT"
    )
    assert contradictions({"LEDGERFLOW_KAFKA_BOOTSTRAP": "h:1", "LEDGERFLOW_REDIS_PORT": "2"}) == []
    assert contradictions({"LEDGERFLOW_KAFKA_BOOTSTRAP": "h:1", "LEDGERFLOW_KAFKA_PORT": " "}) == []


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"LEDGERFLOW_KAFKA_PORT": "abc"}, "LEDGERFLOW_KAFKA_PORT='abc' is not a port number"),
        ({"LEDGERFLOW_REDIS_PORT": "0"}, "LEDGERFLOW_REDIS_PORT='0' is not a port number"),
        ({"LEDGERFLOW_REDIS_PORT": "-1"}, "LEDGERFLOW_REDIS_PORT='-1' is not a port number"),
        ({"LEDGERFLOW_HTTP": "8700"}, "LEDGERFLOW_HTTP='8700' is not HOST:PORT"),
        ({"LEDGERFLOW_HTTP": "h:99999"}, "LEDGERFLOW_HTTP='h:99999' is not HOST:PORT"),
    ],
)
def test_variables_that_do_not_parse_name_themselves(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(")):
        load_settings(env)


def test_host_port_accepts_port_zero_and_hostnames() -> None:
    assert host_port("127.0.0.1:0", "x") == "127.0.0.1:0"
    assert host_port(" edge.internal:8700 ", "x") == "edge.internal:8700"
