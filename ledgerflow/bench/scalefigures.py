"""The scale-out figures' arithmetic and their report (pure: no I/O; ``bench/scale.py`` measures).

One ``Trial`` is one drain: ``workers`` worker processes on a cluster of ``brokers`` brokers
draining a backlog; the window starts once the consumer group is stable with every worker in
it and ends when the read models hold every event and decision. Figures per (brokers,
workers) are medians over rounds. The projection is CPU arithmetic from the measured CPU per
event, with its assumptions written next to it in the report.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

US = 1e6


@dataclass(frozen=True, slots=True)
class Trial:
    brokers: int
    workers: int
    events: int  # events drained inside the window
    seconds: float
    worker_cpu_s: float  # all worker processes together
    broker_cpu_s: float  # all brokers together
    redis_cpu_s: float
    load_average: float  # 1-minute load average at the end of the window

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    def per_event_us(self, cpu_s: float) -> float:
        return cpu_s / self.events * US if self.events else 0.0


@dataclass(frozen=True, slots=True)
class Row:
    """The median of one (brokers, workers) cell."""

    brokers: int
    workers: int
    rounds: int
    rate: float
    speedup: float  # rate / the same cluster's one-worker rate
    worker_us: float  # worker CPU per event, all workers together
    broker_us: float
    redis_us: float
    load_average: float

    @property
    def total_us(self) -> float:
        return self.worker_us + self.broker_us + self.redis_us


def rows(trials: Sequence[Trial]) -> list[Row]:
    """One row per (brokers, workers), sorted; speed-up against the same cluster's one worker."""
    cells: dict[tuple[int, int], list[Trial]] = {}
    for t in trials:
        cells.setdefault((t.brokers, t.workers), []).append(t)
    out: list[Row] = []
    for (brokers, workers), group in sorted(cells.items()):
        out.append(
            Row(
                brokers,
                workers,
                len(group),
                statistics.median(t.rate for t in group),
                1.0,
                statistics.median(t.per_event_us(t.worker_cpu_s) for t in group),
                statistics.median(t.per_event_us(t.broker_cpu_s) for t in group),
                statistics.median(t.per_event_us(t.redis_cpu_s) for t in group),
                statistics.median(t.load_average for t in group),
            )
        )
    base = {r.brokers: r.rate for r in out if r.workers == 1}
    return [_with_speedup(r, base.get(r.brokers)) for r in out]


def _with_speedup(row: Row, one: float | None) -> Row:
    speedup = row.rate / one if one else float("nan")
    return Row(
        row.brokers,
        row.workers,
        row.rounds,
        row.rate,
        speedup,
        row.worker_us,
        row.broker_us,
        row.redis_us,
        row.load_average,
    )


def ceiling(cores: float, row: Row) -> float:
    """Events/s that ``cores`` fully busy with this row's processes could reach: every event
    costs ``row.total_us`` of CPU somewhere on the machine (workers, brokers, Redis)."""
    return cores * US / row.total_us if row.total_us > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Projection:
    worker_cores: int
    rate: float  # events/s the worker cores sustain
    broker_cores: float  # broker CPU that rate needs (the measured cluster's per-event cost)
    redis_cores: float


def project(row: Row, worker_cores: Sequence[int]) -> list[Projection]:
    """Linear in worker cores at the measured CPU per event of ``row`` (one worker process per
    core, each as efficient as measured); broker and Redis cores scale with the rate."""
    out = []
    for cores in worker_cores:
        rate = cores * US / row.worker_us if row.worker_us > 0 else 0.0
        out.append(Projection(cores, rate, rate * row.broker_us / US, rate * row.redis_us / US))
    return out


def replication_cost(table: Sequence[Row]) -> float | None:
    """Broker CPU per event on three brokers ÷ on one (one-worker rows, the least contended)."""
    one = next((r for r in table if r.brokers == 1 and r.workers == 1), None)
    three = next((r for r in table if r.brokers == 3 and r.workers == 1), None)
    if one is None or three is None or one.broker_us <= 0:
        return None
    return three.broker_us / one.broker_us


def _n(x: float, digits: int = 0) -> str:
    if x != x:  # NaN
        return "n/a"
    return f"{x:,.{digits}f}"


def markdown(
    table: Sequence[Row], *, command: str, machine: str, cores: int, load: Sequence[float], when: str
) -> str:
    """The "Scale-out figures" block of docs/scaling.md (generated; the prose around it is not)."""
    out = [
        f"Command: `{command}` ({when}); machine: {machine}, {cores} cores; load average (1, 5, 15 min) "
        f"at the start {', '.join(f'{x:.2f}' for x in load)}.",
        "",
        "| brokers | workers | events/s | × one worker | worker CPU µs/event | broker CPU µs/event "
        f"| Redis CPU µs/event | {cores}-core ceiling, events/s | load avg |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        out.append(
            f"| {r.brokers} | {r.workers} | {_n(r.rate)} | {_n(r.speedup, 2)} | {_n(r.worker_us)} "
            f"| {_n(r.broker_us)} | {_n(r.redis_us)} | {_n(ceiling(cores, r))} | {r.load_average:.1f} |"
        )
    cost = replication_cost(table)
    if cost is not None:
        out += ["", f"Broker CPU per event, three brokers (RF 3) ÷ one broker (RF 1): {cost:.2f}×."]
    three = [r for r in table if r.brokers == max(x.brokers for x in table) and r.workers == 1]
    if three:
        base = three[0]
        out += [
            "",
            f"Projection from the {base.brokers}-broker, one-worker row "
            f"(worker CPU {_n(base.worker_us)} µs/event, "
            f"broker {_n(base.broker_us)}, Redis {_n(base.redis_us)}):",
            "",
            "| worker cores | events/s | broker cores needed | Redis cores needed |",
            "|---:|---:|---:|---:|",
        ]
        for p in project(base, (2, 4, 8, 16, 32)):
            out.append(
                f"| {p.worker_cores} | {_n(p.rate)} | {_n(p.broker_cores, 1)} | {_n(p.redis_cores, 1)} |"
            )
    return "\n".join(out)
