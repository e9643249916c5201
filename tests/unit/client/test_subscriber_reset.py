"""A ``reset`` (the edge could not resume at the cursor given) is never silent: without an
``on_notice`` the Subscriber logs one WARNING line saying why and where it goes on from."""

from __future__ import annotations

import logging

import pytest

from ledgerflow.client.records import Notice
from ledgerflow.client.subscriber import Subscriber, reset_warning


def test_a_reset_nobody_handles_is_one_warning_line(caplog: pytest.LogCaptureFixture) -> None:
    sub = Subscriber("http://edge:8700/", "token", conversation_id="c1")
    with caplog.at_level(logging.WARNING, logger="ledgerflow.client.subscriber"):
        reason = "cursor beyond the log end on e3\n(5 > 4)"
        sub._notify(Notice("reset", {"reason": reason, "restart": "live"}))
        sub._notify(Notice("overflow", {}))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    line = record.getMessage()
    assert "\n" not in line, line
    assert "cursor beyond the log end on e3 (5 > 4)" in line and "live position" in line, line


def test_a_reset_handled_by_on_notice_is_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Notice] = []
    sub = Subscriber("http://edge:8700", "token", on_notice=seen.append)
    with caplog.at_level(logging.WARNING):
        sub._notify(Notice("reset", {"reason": "unknown cursor", "restart": "live"}))
    assert [n.kind for n in seen] == ["reset"] and not caplog.records


def test_the_warning_is_cut_and_names_a_missing_reason() -> None:
    assert "no reason given" in reset_warning("u", {})
    assert len(reset_warning("u", {"reason": "x" * 10_000, "restart": "earliest"})) < 600
