"""Every numeric environment setting refuses a bad value with one line naming the variable, the value
and what is allowed (ValidationError: the CLI prints it and exits 2), and takes its default when unset.
Pure: each parser is given the environment."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest

from ledgerflow.api.tuning import AUDIT_DEADLINE_ENV, READY_MAX_LAG_ENV, EdgeTuning, tuning_from
from ledgerflow.audit.cli import check_environment
from ledgerflow.audit.logchecks import DEFAULT_GRACE_S, GRACE_ENV, grace_from
from ledgerflow.envnumbers import env_number, env_whole
from ledgerflow.errors import ValidationError
from ledgerflow.identity.edge import DEFAULT_WINDOW_S, refusals_window_from
from ledgerflow.identity.edge import WINDOW_ENV as REFUSALS_WINDOW_ENV
from ledgerflow.projections.abandoned import LEASE_ENV
from ledgerflow.projections.parallel import MAX_PROCESSES, PROCESSES_ENV, processes_from
from ledgerflow.usage.settings import LATENESS_ENV, WINDOW_ENV, window_config_from
from ledgerflow.usage.windows import WindowConfig

Parser = Callable[[Mapping[str, str]], object]

NOT_NUMBERS = ["abc", "nan", "NaN", "inf", "-inf", "1e999", "0x10", "½", "1,5", "--1"]

# (variable, its parser, values it must refuse besides NOT_NUMBERS, values it must take)
CASES: list[tuple[str, Parser, list[str], list[str]]] = [
    (WINDOW_ENV, window_config_from, ["0", "-1", "0.0001", "86401"], ["1", "0.5", " 60 ", "86400", "0.001"]),
    (LATENESS_ENV, window_config_from, ["-0.001", "-1", "86401"], ["0", "10", "2.5"]),
    (
        PROCESSES_ENV,
        lambda env: processes_from(env, 4),
        ["0", "-3", "1.5", "1e3", "1025"],
        ["1", "8", "1024"],
    ),
    (GRACE_ENV, grace_from, ["-1", "-0.5"], ["0", "60", "1e7"]),
    (AUDIT_DEADLINE_ENV, tuning_from, ["0", "-5", "0.0", "86401"], ["0.5", "60", "86400"]),
    (READY_MAX_LAG_ENV, tuning_from, ["-1", "1.5", "1e5"], ["0", "100", "10000000000"]),
    (REFUSALS_WINDOW_ENV, refusals_window_from, ["0", "-60", "0.5", "86401"], ["1", "60", "86400"]),
]
REFUSED = [(name, parse, raw) for name, parse, bad, _ in CASES for raw in NOT_NUMBERS + bad]
TAKEN = [(name, parse, raw) for name, parse, _, good in CASES for raw in good]


@pytest.mark.parametrize(("name", "parse", "raw"), REFUSED, ids=[f"{n}={r}" for n, _, r in REFUSED])
def test_a_bad_value_is_one_line_naming_the_variable_the_value_and_the_range(
    name: str, parse: Parser, raw: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        parse({name: raw})
    text = str(refused.value)
    assert text.startswith(f"{name}={raw.strip()!r}: ") and "\n" not in text
    assert "default" in text and any(word in text for word in ("from", "above", "or more")), text


@pytest.mark.parametrize(("name", "parse", "raw"), TAKEN, ids=[f"{n}={r}" for n, _, r in TAKEN])
def test_a_value_in_range_is_taken(name: str, parse: Parser, raw: str) -> None:
    parse({name: raw})


def test_unset_or_empty_gives_the_defaults() -> None:
    for environ in ({}, {WINDOW_ENV: "", LATENESS_ENV: "  "}):
        assert window_config_from(environ) == WindowConfig(60_000_000, 10_000_000)
    assert processes_from({}, 6) == 6
    assert processes_from({PROCESSES_ENV: ""}, None) == 1  # os.cpu_count() may not know
    assert grace_from({}) == DEFAULT_GRACE_S
    assert tuning_from({}) == EdgeTuning(60.0, 100_000)
    assert refusals_window_from({REFUSALS_WINDOW_ENV: ""}) == DEFAULT_WINDOW_S


def test_values_are_what_was_asked() -> None:
    config = window_config_from({WINDOW_ENV: "0.29", LATENESS_ENV: "0"})
    assert (config.size_micros, config.lateness_micros) == (290_000, 0)  # rounded, not truncated to 289999
    assert processes_from({PROCESSES_ENV: f"{MAX_PROCESSES}"}, 2) == MAX_PROCESSES
    assert tuning_from({AUDIT_DEADLINE_ENV: "2.5", READY_MAX_LAG_ENV: "0"}) == EdgeTuning(2.5, 0)
    assert refusals_window_from({REFUSALS_WINDOW_ENV: "30"}) == 30


def test_the_audit_checks_every_variable_it_reads_before_it_starts() -> None:
    check_environment({})
    for name in (GRACE_ENV, WINDOW_ENV, LATENESS_ENV, PROCESSES_ENV, LEASE_ENV):
        with pytest.raises(ValidationError, match=name):
            check_environment({name: "nan"})
    check_environment({PROCESSES_ENV: "0", LEASE_ENV: "1"}, projections=False)  # not read without the rebuild


def test_the_messages_say_what_is_allowed() -> None:
    with pytest.raises(ValidationError, match=r"^X='0': seconds above 0 and at most 5 \(default 1\)$"):
        env_number({"X": "0"}, "X", 1, 0, 5, low_open=True)
    with pytest.raises(ValidationError, match=r"^X='-1': ms 0 or more \(default 2\)$"):
        env_number({"X": "-1"}, "X", 2, 0, unit="ms")
    with pytest.raises(ValidationError, match=r"^X='7': a whole number from 1 to 4 \(default 2\)$"):
        env_whole({"X": "7"}, "X", 2, 1, 4)
    with pytest.raises(ValidationError, match=r"^X='-1': a whole number 0 or more \(default 3\)$"):
        env_whole({"X": "-1"}, "X", 3, 0)
    with pytest.raises(ValidationError, match=r"^X='2.5': whole seconds from 1 to 9 \(default 3\)$"):
        env_whole({"X": "2.5"}, "X", 3, 1, 9, unit="whole seconds")
