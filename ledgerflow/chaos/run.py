"""One chaos run: bring the private world up, drive the load and the subscribers, inject the
planned faults one after another, stop the load, wait for the pipeline, check, tear down."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ledgerflow.chaos import checks
from ledgerflow.chaos.environment import Environment, bring_up
from ledgerflow.chaos.evidence import read_evidence, read_model_turns, settle
from ledgerflow.chaos.faults import KINDS, FaultContext, kinds_for
from ledgerflow.chaos.load import Load
from ledgerflow.chaos.plan import Planned, plan
from ledgerflow.chaos.report import ChaosReport, Injected
from ledgerflow.chaos.subscribers import Subscribers
from ledgerflow.chaos.terminate import run_until_terminated
from ledgerflow.config import child_env
from ledgerflow.errors import LedgerflowError

PROGRESS_EVERY_S = 30.0
AUDIT_TIMEOUT_S = 1800.0


@dataclass(frozen=True, slots=True)
class ChaosConfig:
    duration_s: float
    seed: int
    workers: int = 2
    rate: float = 100.0  # records per second sent, all paths together
    subscribers: int = 6
    kinds: tuple[str, ...] = ()  # empty: every kind that applies to the run's Redis (kinds_for)
    redis_cluster: bool = False  # a Redis Cluster (three masters, a replica each) instead of one Redis
    gap_s: tuple[float, float] = (20.0, 45.0)
    drivers: tuple[int, int, int] = (24, 12, 12)  # edge conversations, Kafka conversations, steps
    settle_s: float = 600.0
    state_dir: Path | None = None
    keep: bool = False  # leave the state directory (logs) behind even when the run passes
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def fault_kinds(self) -> tuple[str, ...]:
        """The kinds asked for, or every kind that applies to the run's Redis."""
        return self.kinds or kinds_for(self.redis_cluster)


def run(config: ChaosConfig, say: Callable[[str], None]) -> ChaosReport:
    began = time.monotonic()
    redis = "cluster" if config.redis_cluster else "single"
    report = ChaosReport(seed=config.seed, duration_s=config.duration_s, redis=redis)
    state = config.state_dir or Path(tempfile.mkdtemp(prefix="ledgerflow-chaos-"))
    schedule = plan(config.seed, config.duration_s, config.fault_kinds, config.gap_s)
    say(
        f"chaos: seed {config.seed}; {len(schedule)} faults planned; Redis: {redis}; "
        f"state and logs in {state}"
    )
    env = bring_up(state, config.workers, say, config.redis_cluster)
    try:
        load = run_until_terminated(_drive(env, config, schedule, report, say))
        _check(env, config, load, report, say)
    finally:
        env.stop(say)
        report.seconds = time.monotonic() - began
    if report.passed and not config.keep and config.state_dir is None:
        shutil.rmtree(state, ignore_errors=True)
    return report


async def _drive(
    env: Environment,
    config: ChaosConfig,
    schedule: list[Planned],
    report: ChaosReport,
    say: Callable[[str], None],
) -> tuple[Load, Subscribers]:
    load = Load(env, config.rate, config.seed, f"{config.seed:x}")
    await load.start()
    watchers = Subscribers(load, config.subscribers)
    edge, kafka, steps = config.drivers
    tasks = [asyncio.create_task(t()) for t in load.tasks(edge, kafka, steps)]
    tasks += [asyncio.create_task(watchers.run(i)) for i in range(config.subscribers)]
    ctx = FaultContext(env, random.Random(config.seed + 1), say, watchers.open_on)
    began = time.monotonic()
    progress = asyncio.create_task(_progress(load, watchers, report, began, say))
    try:
        for planned in schedule:
            await asyncio.sleep(max(0.0, planned.at_s - (time.monotonic() - began)))
            at = time.monotonic() - began
            if at > config.duration_s and set(report.faults_by_kind()) >= set(config.fault_kinds):
                break  # faults that overran their slots pushed the rest past the end: every kind struck
            say(f"chaos {at:5.0f}s: injecting {planned.kind} …")
            try:
                outcome = await asyncio.to_thread(KINDS[planned.kind].inject, ctx)
            except (LedgerflowError, OSError, IndexError) as exc:  # the run goes on; the report says so
                report.discrepancies.append(f"{planned.kind} at {at:.0f} s was not undone: {exc}")
                say(f"chaos {at:5.0f}s: {planned.kind} failed: {exc}")
                continue
            took = time.monotonic() - began - at
            report.faults.append(Injected(planned.kind, round(at, 1), outcome.target, round(took, 1)))
            say(f"chaos {at:5.0f}s: {planned.kind} on {outcome.target}: undone and healed after {took:.0f} s")
        await asyncio.sleep(max(0.0, config.duration_s - (time.monotonic() - began)))
        say("chaos: stopping the load; subscribers finish their conversations")
        load.stopping.set()
        report.load_s = round(time.monotonic() - began, 1)
        await asyncio.gather(*tasks)
    finally:
        load.stopping.set()
        progress.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, progress, return_exceptions=True)
        await load.close()
        await watchers.close()
    return load, watchers


async def _progress(
    load: Load, watchers: Subscribers, report: ChaosReport, began: float, say: Callable[[str], None]
) -> None:
    while True:
        await asyncio.sleep(PROGRESS_EVERY_S)
        t = load.ledger.tally
        errors = ", ".join(f"{k} {v}" for k, v in sorted(t.errors.items())) or "none"
        say(
            f"chaos {time.monotonic() - began:5.0f}s: sent {sum(t.submitted.values())}, "
            f"acknowledged {sum(t.acknowledged.values())}, faults {len(report.faults)}, "
            f"SSE frames {watchers.frames} ({watchers.resumes} resumes); errors: {errors}"
        )


def _check(
    env: Environment,
    config: ChaosConfig,
    driven: tuple[Load, Subscribers],
    report: ChaosReport,
    say: Callable[[str], None],
) -> None:
    load, watchers = driven
    report.tally = load.ledger.tally
    report.subscribers, report.resumes, report.frames = (
        len(watchers.watches),
        watchers.resumes,
        watchers.frames,
    )
    report.discrepancies += load.ledger.bad + watchers.problems()
    dead = [
        f"{s.name} exited with {s.popen.returncode if s.popen else None}"
        for s in env.workers + env.edges
        if not s.alive()
    ]
    report.discrepancies += dead
    turns = read_evidence(env.settings).turns
    settle(env.settings, turns, config.settle_s, say)
    evidence = read_evidence(env.settings)
    report.turns_on_log, report.decisions = evidence.turns, len(evidence.decisions)
    say(f"chaos: checking {len(load.ledger.acks)} acknowledged records, {evidence.turns} turns")
    report.discrepancies += checks.acknowledged_once(load.ledger.acks, evidence.events + evidence.commands)
    conversations = {(e.tenant, e.subject) for e in evidence.events if e.type == "MessageSubmitted"}
    turns_read = read_model_turns(env.settings, conversations)
    report.discrepancies += checks.one_decision_per_turn(evidence.events, evidence.decisions, turns_read)
    by_conversation: dict[str, dict[str, list[checks.Logged]]] = {}
    for code, logged in (("e", evidence.events), ("d", evidence.decisions)):
        for r in logged:
            by_conversation.setdefault(r.subject, {"e": [], "d": []})[code].append(r)
    for w in watchers.watches:
        records = by_conversation.get(w.conversation, {"e": [], "d": []})
        report.discrepancies += checks.served_once(w.conversation, w.seen, w.cursor, records)
    report.audit_exit = _audit(env, say)
    if report.audit_exit != 0:
        report.discrepancies.append(f"ledgerflow audit exited {report.audit_exit}: {_findings(env)}")


def _audit(env: Environment, say: Callable[[str], None]) -> int:
    say("chaos: ledgerflow audit (chains, decisions re-derived, read models equal to a rebuild) …")
    out = env.settings.state_dir / "audit.json"
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ledgerflow.cli", "audit", "--json", str(out), "--quiet"],
            env=child_env(env.settings),
            capture_output=True,
            text=True,
            timeout=AUDIT_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return -1
    say(f"chaos: audit exited {done.returncode}")
    return done.returncode


def _findings(env: Environment) -> str:
    try:
        found = json.loads((env.settings.state_dir / "audit.json").read_text())
        return json.dumps(found.get("findings", [])[:5])[:1500]
    except (OSError, ValueError, LedgerflowError) as exc:
        return f"(no report: {exc})"
