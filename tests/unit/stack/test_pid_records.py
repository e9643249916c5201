"""Pid files and ``/proc/PID/stat`` text, parsed without touching either: a pid is ours only
when the process at it has the start time the pid file recorded (a recycled pid has another)."""

from __future__ import annotations

import pytest

from ledgerflow.stack.processes import (
    PidRecord,
    ProcStat,
    format_pid_file,
    is_ours,
    parse_pid_file,
    parse_stat,
)

# A real line (sleep 120), with its start time (field 22) at 5_554_321.
STAT = (
    "4242 (sleep) S 4200 4242 4200 34816 4242 4194304 94 0 0 0 0 0 0 0 20 0 1 0 5554321 "
    "5652480 229 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
)


def test_a_pid_file_round_trips() -> None:
    record = PidRecord(4242, 5554321)
    assert format_pid_file(record) == "4242 5554321\n"
    assert parse_pid_file(format_pid_file(record)) == record


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "4242\n",  # an older ledgerflow's pid-only file: no start time to check
        "4242 abc\n",
        "abc 5554321\n",
        "-4242 5554321\n",
        "0 5554321\n",
        "4242 5554321 7\n",
        "4242 -1\n",
        "²³ 5554321\n",  # digits to str.isdigit, not to int()
        "٤٢ 5554321\n",
        "99999999999999999999 5554321\n",  # no such pid (os.kill would overflow)
        "1" * 5000 + " 5554321\n",  # int() refuses more than 4,300 digits
        "4242 " + "1" * 5000 + "\n",
        "\x00\x01\x02",
        "4242.0 5554321\n",
    ],
)
def test_anything_but_pid_and_start_time_names_no_process(text: str) -> None:
    assert parse_pid_file(text) is None


def test_stat_gives_the_state_and_field_22() -> None:
    assert parse_stat(STAT) == ProcStat("S", 5554321)


@pytest.mark.parametrize("name", ["sleep) R 1 2 3", "a b", ")", "(", "x) Z 9"])
def test_a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields(name: str) -> None:
    line = STAT.replace("(sleep)", f"({name})")
    assert parse_stat(line) == ProcStat("S", 5554321)


@pytest.mark.parametrize(
    "text",
    ["", "garbage", "4242 (sleep) S 4200", STAT.replace("5554321", "x"), STAT.replace("(sleep)", "sleep")],
)
def test_stat_text_that_is_not_such_a_line_is_none(text: str) -> None:
    assert parse_stat(text) is None


@pytest.mark.parametrize(
    ("stat", "ours"),
    [
        (ProcStat("S", 5554321), True),
        (ProcStat("R", 5554321), True),
        (ProcStat("S", 5554322), False),  # the pid recycled: another process, started later
        (ProcStat("Z", 5554321), False),  # ours, but exited (a zombie not reaped yet)
        (None, False),  # no process at that pid
    ],
)
def test_only_a_live_process_with_the_recorded_start_time_is_ours(stat: ProcStat | None, ours: bool) -> None:
    assert is_ours(PidRecord(4242, 5554321), stat) is ours
