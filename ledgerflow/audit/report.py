"""What an audit found: findings with their record positions, a human summary, a JSON report.

A ``Finding`` is one discrepancy between the logs (or the read models) and what they must
be. It always names where to look: the topic, partition and offset of the record, and
the chain key, conversation or Redis key concerned. ``partition``/``offset`` are None only
where no record is to blame: a read-model key that no record wrote, or a live read-model
space that is incomplete as a whole.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

REPORT_VERSION = 1
MAX_FINDINGS = 1000  # kept in the report; every finding is still counted
MAX_KEY_CHARS = 200
MAX_DETAIL_CHARS = 2000
"""A finding's key and detail are cut to these (``bounded``): a record key is whatever a producer
wrote, up to the broker's 1 MB — one 600 KB key made a 600 KB summary line, and 1,000 of them
a report of gigabytes."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One discrepancy. ``kind`` is ``<check>.<what>``, e.g. ``decision.altered``."""

    kind: str
    topic: str
    partition: int | None
    offset: int | None
    key: str
    detail: str

    @property
    def check(self) -> str:
        return self.kind.split(".", 1)[0]

    @property
    def where(self) -> str:
        if self.partition is None:
            return f"{self.topic} (no record position)"
        return f"{self.topic}[{self.partition}]@{self.offset}"

    def __str__(self) -> str:
        return f"{self.kind} at {self.where} key {self.key!r}: {self.detail}"


def bounded(finding: Finding) -> Finding:
    """Pure: ``finding`` with its key cut to ``MAX_KEY_CHARS`` and its detail to
    ``MAX_DETAIL_CHARS``, each saying how long it was."""
    key, detail = _cut(finding.key, MAX_KEY_CHARS), _cut(finding.detail, MAX_DETAIL_CHARS)
    if key is finding.key and detail is finding.detail:
        return finding
    return Finding(finding.kind, finding.topic, finding.partition, finding.offset, key, detail)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} characters)"


def _order(finding: Finding) -> tuple[str, int, int, str]:
    return (
        finding.topic,
        -1 if finding.partition is None else finding.partition,
        -1 if finding.offset is None else finding.offset,
        finding.kind,
    )


@dataclass
class Report:
    """Findings (the first ``MAX_FINDINGS``, in log order), counts per kind, and what was read."""

    findings: list[Finding] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)
    stats: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)
    seconds: float = 0.0
    max_findings: int = MAX_FINDINGS

    @property
    def clean(self) -> bool:
        return not self.counts

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def add(self, finding: Finding | None) -> None:
        if finding is None:
            return
        self.counts[finding.kind] += 1
        if len(self.findings) < self.max_findings:
            self.findings.append(bounded(finding))

    def extend(self, findings: list[Finding]) -> None:
        for finding in findings:
            self.add(finding)

    def count(self, name: str, n: int = 1) -> None:
        self.stats[name] = self.stats.get(name, 0) + n

    def merge(self, other: Report) -> None:
        """Take in the findings, counts, stats, notes and checks of a part run on its own."""
        for kind, n in other.counts.items():
            kept = [f for f in other.findings if f.kind == kind]
            self.counts[kind] += n - len(kept)  # counted but not kept there
            self.extend(kept)
        for name, value in other.stats.items():
            self.count(name, value)
        self.notes += other.notes
        self.checks += other.checks

    def ordered(self) -> list[Finding]:
        return sorted(self.findings, key=_order)


def summary(report: Report) -> str:
    """The human summary: what was checked, then every kept finding, one per line."""
    stats = report.stats
    lines = [
        (
            f"audit: {'CLEAN' if report.clean else _plural(report.total, 'DISCREPANCY', 'DISCREPANCIES')} "
            f"({', '.join(report.checks) or 'nothing'} checked in {report.seconds:.1f} s)"
        ),
    ]
    if stats:
        lines.append("  " + ", ".join(f"{name} {value:,}" for name, value in sorted(stats.items())))
    lines += [f"  note: {note}" for note in report.notes]
    if report.counts:
        lines.append("  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(report.counts.items())))
        first = report.ordered()
        for finding in first:
            lines.append(f"  - {finding}")
        hidden = report.total - len(first)
        if hidden > 0:
            lines.append(f"  … and {hidden} more (only the first {report.max_findings} are listed)")
    return "\n".join(lines)


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def to_json(report: Report) -> dict[str, Any]:
    """The JSON report (``report_version`` 1): stable field names for tools."""
    return {
        "report_version": REPORT_VERSION,
        "clean": report.clean,
        "discrepancies": report.total,
        "by_kind": dict(sorted(report.counts.items())),
        "checks": list(report.checks),
        "stats": dict(sorted(report.stats.items())),
        "notes": list(report.notes),
        "seconds": round(report.seconds, 3),
        "findings": [asdict(f) for f in report.ordered()],
        "findings_truncated": report.total > len(report.findings),
    }
