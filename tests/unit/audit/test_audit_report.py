"""The report: clean or not, findings in log order with positions, JSON for tools."""

from __future__ import annotations

import json

from ledgerflow.audit.report import Finding, Report, summary, to_json


def test_an_empty_report_is_clean() -> None:
    report = Report(checks=["hash chains"])
    report.count("decisions", 12)
    assert report.clean
    assert summary(report).startswith("audit: CLEAN (hash chains checked")
    assert to_json(report)["clean"] is True


def test_findings_are_listed_in_log_order_with_their_position() -> None:
    report = Report()
    report.add(Finding("decision.altered", "policy.decisions", 2, 90, "c-1", "outcome changed"))
    report.add(Finding("chain.altered", "policy.decisions", 2, 7, "c-1", "hash mismatch"))
    report.add(None)
    text = summary(report)
    assert "2 DISCREPANCIES" in text
    assert text.index("policy.decisions[2]@7") < text.index("policy.decisions[2]@90")
    data = json.loads(json.dumps(to_json(report)))
    assert data["by_kind"] == {"chain.altered": 1, "decision.altered": 1}
    assert data["findings"][0] == {
        "kind": "chain.altered",
        "topic": "policy.decisions",
        "partition": 2,
        "offset": 7,
        "key": "c-1",
        "detail": "hash mismatch",
    }


def test_findings_beyond_the_cap_are_counted_not_kept() -> None:
    report = Report(max_findings=2)
    for n in range(5):
        report.add(Finding("chain.missing", "t", 0, n, "k", "gap"))
    assert (len(report.findings), report.total) == (2, 5)
    assert to_json(report)["findings_truncated"] is True
    assert "and 3 more" in summary(report)


def test_a_huge_key_or_detail_is_cut_so_the_summary_stays_readable() -> None:
    """A record key is whatever a producer wrote (up to the broker's 1 MB): one 600 KB key made
    a 600 KB summary line, and 1,000 such findings a report of gigabytes."""
    report = Report()
    report.add(Finding("record.undecodable", "t.usage.windows", 1, 7, "K" * 600_000, "d" * 5000))
    [kept] = report.findings
    assert kept.key == "K" * 200 + "… (600,000 characters)"
    assert kept.detail == "d" * 2000 + "… (5,000 characters)"
    assert max(len(line) for line in summary(report).splitlines()) < 2500
    assert report.counts == {"record.undecodable": 1}
    short = Finding("chain.altered", "t.policy.decisions", 0, 1, "conv-1", "hash …")
    report.add(short)
    assert report.findings[1] is short  # within the bounds: kept as it is
