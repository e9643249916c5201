"""The JSON log lines of ``--log-format json``: one object per line, a closed set of fields."""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys

import pytest

from ledgerflow.errors import ValidationError
from ledgerflow.logformat import ENV, JsonFormatter, choose, dict_config, log_format


def _record(
    msg: str = "hello %s", args: tuple[object, ...] = ("world",), **extra: object
) -> logging.LogRecord:
    record = logging.LogRecord("ledgerflow.x", logging.WARNING, __file__, 1, msg, args, None)
    record.created = 1_796_000_000.123456
    for name, value in extra.items():
        setattr(record, name, value)
    return record


def test_a_record_is_one_json_object_with_time_level_logger_and_message() -> None:
    line = JsonFormatter().format(_record())
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2026-11-30T00:53:20.123456Z",
        "level": "WARNING",
        "logger": "ledgerflow.x",
        "message": "hello world",
    }


def test_context_fields_are_written_when_set_and_nothing_else_from_extra() -> None:
    class Secret:
        def __str__(self) -> str:
            return "a whole object"

    record = _record(
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
        tenant="acme",
        conversation="c1",
        topic="conversation.events",
        partition=3,
        offset=42,
        password="hunter2",
        payload=Secret(),
    )
    got = json.loads(JsonFormatter().format(record))
    assert got["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (got["tenant"], got["conversation"], got["topic"]) == ("acme", "c1", "conversation.events")
    assert (got["partition"], got["offset"]) == (3, 42)
    assert "password" not in got and "payload" not in got and "hunter2" not in json.dumps(got)


def test_a_non_json_context_value_is_written_as_text_and_none_is_left_out() -> None:
    got = json.loads(JsonFormatter().format(_record(tenant=b"acme", conversation=None)))
    assert got["tenant"] == "b'acme'"
    assert "conversation" not in got


def test_multi_line_messages_and_exceptions_stay_on_one_line() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed:\n%s", ("details",), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    got = json.loads(line)
    assert got["message"] == "failed:\ndetails"
    assert got["exception"].startswith("Traceback") and "RuntimeError: boom\nsecond line" in got["exception"]


def test_a_message_whose_arguments_do_not_fit_still_raises_like_logging_does() -> None:
    # logging reports such records through handleError; the formatter must not hide the bug.
    with pytest.raises(TypeError):
        JsonFormatter().format(_record("%d", ("not a number",)))


@pytest.mark.parametrize(
    ("value", "expected"), [("json", "json"), (" JSON ", "json"), ("text", "text"), ("", "text")]
)
def test_the_format_comes_from_the_environment(value: str, expected: str) -> None:
    assert log_format({ENV: value}) == expected
    assert log_format({}) == "text"


@pytest.mark.parametrize("value", ["yaml", "jsonl", "1"])
def test_an_unknown_format_is_a_one_line_error_naming_the_variable(value: str) -> None:
    with pytest.raises(ValidationError, match=f"^{ENV}='{value}' is not a log format; use 'text' or 'json'$"):
        log_format({ENV: value})


def test_the_flag_wins_over_the_environment_and_is_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "text")
    assert choose("json") == "json"
    assert os.environ[ENV] == "json"
    monkeypatch.setenv(ENV, "json")
    assert choose(None) == "json"


def test_the_worker_gets_a_dict_config_only_for_json() -> None:
    assert dict_config("text") is None
    config = dict_config("json")
    assert config is not None
    handlers, level = logging.root.handlers[:], logging.root.level
    try:
        logging.config.dictConfig(config)  # accepted by logging as it is
        assert [type(h.formatter) for h in logging.root.handlers] == [JsonFormatter]
    finally:
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)


def test_hostile_text_stays_one_ascii_line_that_decodes_back() -> None:
    message = "user said \x1b[31mred\x1b[0m, caf\u00e9, bytes \udcff, nul \x00, line\u2028sep"
    line = JsonFormatter().format(_record("%s", (message,), tenant="t\nx"))
    assert line.isascii() and len(line.splitlines()) == 1 and "\x1b" not in line
    line.encode("ascii")  # whatever the stream's encoding, nothing to fail on
    got = json.loads(line)
    assert got["message"] == message and got["tenant"] == "t\nx"
