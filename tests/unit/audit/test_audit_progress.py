"""The progress line: rate and ETA; silent unless stderr is a terminal or it is forced."""

from __future__ import annotations

import io

from ledgerflow.audit.progress import Progress, render


def test_render_shows_count_rate_and_eta() -> None:
    line = render("replaying", 5_000, 20_000, 2.0)
    assert "5,000/20,000 records" in line and "2,500 rec/s" in line and "ETA 0:06" in line


def test_render_without_total_has_no_eta() -> None:
    assert "ETA" not in render("replaying", 10, 0, 1.0)


def test_nothing_is_written_when_the_stream_is_not_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress("x", 10, stream=out)
    bar.update(5)
    bar.finish()
    assert out.getvalue() == ""


def test_forced_progress_redraws_at_most_every_interval() -> None:
    now = [0.0]
    out = io.StringIO()
    bar = Progress("x", 10, stream=out, show=True, interval=1.0, clock=lambda: now[0])
    bar.update(1)
    bar.update(2)
    now[0] = 1.5
    bar.update(3)
    assert out.getvalue().count("\r") == 2
    bar.finish()
    assert out.getvalue().endswith("\n")
