"""The supervisor's pure choices: metrics ports, data directories, backoff, the process count."""

from __future__ import annotations

import pytest

from ledgerflow.agents.supervisor import (
    BACKOFF_MAX_S,
    CHILD_ENV,
    backoff,
    check_processes,
    child_metrics,
    data_dir_suffix,
)
from ledgerflow.errors import ValidationError


def test_child_i_serves_metrics_on_the_base_port_plus_i() -> None:
    assert [child_metrics("127.0.0.1:8701", i) for i in range(3)] == [
        "127.0.0.1:8701",
        "127.0.0.1:8702",
        "127.0.0.1:8703",
    ]
    assert child_metrics("[::1]:9000", 1) == "[::1]:9001"


def test_metrics_off_for_the_supervisor_are_off_for_every_child() -> None:
    assert child_metrics(None, 0) == "off"
    assert child_metrics(None, 5) == "off"


def test_only_a_supervised_child_gets_its_own_data_directory() -> None:
    assert data_dir_suffix({}) == ""
    assert data_dir_suffix({CHILD_ENV: ""}) == ""
    assert data_dir_suffix({CHILD_ENV: "0"}) == "-0"
    assert data_dir_suffix({CHILD_ENV: " 3 "}) == "-3"


def test_backoff_doubles_from_one_second_and_is_capped() -> None:
    assert [backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert backoff(6) == BACKOFF_MAX_S
    assert backoff(1000) == BACKOFF_MAX_S
    assert backoff(0) == 1.0


@pytest.mark.parametrize("n", [0, -1, -100])
def test_fewer_than_one_process_is_a_usage_error(n: int) -> None:
    with pytest.raises(ValidationError, match=f"--processes must be at least 1, not {n}"):
        check_processes(n)


def test_one_or_more_processes_are_accepted() -> None:
    assert check_processes(1) == 1
    assert check_processes(8) == 8


def test_children_whose_metrics_ports_would_pass_65535_are_refused_in_one_line() -> None:
    assert check_processes(4, "127.0.0.1:65532") == 4  # 65532 … 65535
    assert check_processes(4, None) == 4  # metrics off: no ports
    with pytest.raises(
        ValidationError, match=r"^--processes 5: .* from 65532 past 65535; .* at most 65531, or off$"
    ):
        check_processes(5, "127.0.0.1:65532")
