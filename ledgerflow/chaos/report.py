"""What a chaos run reports: the seed, each fault injected, what the clients sent and got back,
and every discrepancy the checks found (the run passes only with none)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Injected:
    """One fault: ``at_s`` after the load started, what it hit, how long until it was undone."""

    kind: str
    at_s: float
    target: str
    took_s: float


@dataclass(slots=True)
class Tally:
    """Requests and records by path (``edge-events``, ``kafka``, ``step``, ``training-edge`` …)."""

    submitted: Counter[str] = field(default_factory=Counter)
    acknowledged: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)  # "503", "409", "connect-refused", …


@dataclass(slots=True)
class ChaosReport:
    seed: int
    duration_s: float
    redis: str = "single"  # the Redis topology the run had: "single" or "cluster" (a Redis Cluster)
    load_s: float = 0.0  # how long the load ran: past the duration while a fault was still being undone
    faults: list[Injected] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    turns_on_log: int = 0
    decisions: int = 0
    subscribers: int = 0
    resumes: int = 0
    frames: int = 0
    audit_exit: int | None = None
    discrepancies: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.audit_exit == 0 and not self.discrepancies

    def faults_by_kind(self) -> dict[str, list[float]]:
        found: dict[str, list[float]] = {}
        for f in self.faults:
            found.setdefault(f.kind, []).append(f.at_s)
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "duration_s": self.duration_s,
            "redis": self.redis,
            "load_s": self.load_s,
            "passed": self.passed,
            "faults": [asdict(f) for f in self.faults],
            "faults_by_kind": self.faults_by_kind(),
            "submitted": dict(self.tally.submitted),
            "acknowledged": dict(self.tally.acknowledged),
            "client_errors": dict(self.tally.errors),
            "turns_on_log": self.turns_on_log,
            "decisions": self.decisions,
            "subscribers": self.subscribers,
            "resumes": self.resumes,
            "frames": self.frames,
            "audit_exit": self.audit_exit,
            "discrepancies": self.discrepancies,
            "seconds": round(self.seconds, 1),
        }


def lines(report: ChaosReport) -> list[str]:
    """The report as the operator reads it at the end of a run."""

    def counts(c: Counter[str]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"

    out = [
        f"chaos: seed {report.seed}, load {report.load_s:.0f} s (asked {report.duration_s:.0f} s), "
        f"run {report.seconds:.0f} s in all",
        "redis: a Redis Cluster (three masters, a replica each)"
        if report.redis == "cluster"
        else "redis: one",
        f"faults injected: {len(report.faults)}",
    ]
    for kind, times in sorted(report.faults_by_kind().items()):
        out.append(f"  {kind:<22} {len(times)} × at " + ", ".join(f"{t:.0f}s" for t in times))
    out += [
        f"submitted: {counts(report.tally.submitted)}",
        f"acknowledged: {counts(report.tally.acknowledged)}",
        f"turns on the log: {report.turns_on_log}; decisions: {report.decisions}",
        f"SSE subscribers: {report.subscribers}, {report.frames} frames, "
        f"{report.resumes} resumes with a cursor",
        f"client errors by status: {counts(report.tally.errors)}",
        f"audit exit code: {report.audit_exit}",
        f"discrepancies: {len(report.discrepancies)}",
    ]
    out += [f"  {d}" for d in report.discrepancies[:30]]
    out.append("PASSED" if report.passed else "FAILED")
    return out
