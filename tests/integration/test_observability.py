"""Observability against a live worker and a live edge on the real stack (issue 16, item 3).

- each process exports its own metrics: the worker's and the edge's ``ledgerflow_`` families
  are disjoint but for ``ledgerflow_build_info``; everything else is the client library's
  ``process_*`` / ``python_*``;
- the worker reports its group's consumer lag per topic and partition;
- every metric the Grafana dashboard and the alert rules query is exported, and the rules
  pass ``promtool check rules`` and their own ``promtool test rules`` cases;
- docs/observability.md lists exactly the exported families, with the process that exports them;
- ``--log-format json`` makes every line of the worker's and the edge's logs a JSON object.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import ledgerflow
from ledgerflow.config import Settings
from ledgerflow.demo import child_env
from ledgerflow.kafka.admin import ensure_topics, partition_counts
from ledgerflow.netutil import free_port, wait_http_ready
from tests.integration.edgekit import bearer, turn
from tests.support.processes import Process, start

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy" / "observability"
DOC = ROOT / "docs" / "observability.md"
RUNTIME = ("process_", "python_")
"""Families of prometheus_client's own collectors, exported by both processes."""
SHARED = {"ledgerflow_build_info"}
AWAITED: set[str] = set()
"""Metrics queried by the alert rules and the dashboard before they land (none now: signed rule
packs export ledgerflow_policy_packs_refused_total)."""
TYPE_LINE = re.compile(r"^# TYPE (\S+) (\S+)$", re.M)
METRIC_NAME = re.compile(r"\b(?:ledgerflow|process|python)_[a-zA-Z0-9_]+\b")
SUFFIXES = {"counter": ("", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created")}


@dataclass(frozen=True)
class Live:
    settings: Settings
    edge: str
    worker: str
    edge_proc: Process
    worker_proc: Process


def families(text: str) -> dict[str, str]:
    """Family name → type, from the ``# TYPE`` lines of an exposition."""
    return dict(TYPE_LINE.findall(text))


def queryable(text: str) -> set[str]:
    """Every series name a PromQL query may use against this exposition."""
    names = set()
    for name, kind in families(text).items():
        names |= {name + s for s in SUFFIXES.get(kind, ("",))}
    return names


def _lag_rows(text: str, group: str) -> list[tuple[str, str, float]]:
    rows = []
    for family in text_string_to_metric_families(text):
        if family.name == "ledgerflow_consumer_lag_records":
            rows += [
                (s.labels["topic"], s.labels["partition"], s.value)
                for s in family.samples
                if s.labels["group"] == group
            ]
    return rows


@pytest.fixture(scope="module")
def live(stack: Settings) -> Iterator[Live]:
    settings = stack.with_overrides(topic_prefix=f"t{uuid.uuid4().hex[:10]}.")
    asyncio.run(ensure_topics(settings))
    log_dir = stack.state_dir / "test-logs" / "observability"
    metrics, http = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    worker = start(
        settings,
        "worker",
        "worker",
        "--log-format",
        "json",
        log_dir=log_dir,
        extra_env={"LEDGERFLOW_WORKER_METRICS": metrics},
    )
    edge = start(settings.with_overrides(http=http), "edge", "serve", "--log-format", "json", log_dir=log_dir)
    try:
        wait_http_ready(edge, f"http://{http}")
        yield Live(settings, f"http://{http}", f"http://{metrics}", edge, worker)
    finally:
        edge.stop()
        worker.stop()


@pytest.fixture(scope="module")
def scraped(live: Live) -> tuple[str, str]:
    """(edge, worker) expositions once the worker has reported lag for the turns posted here."""
    headers = bearer(live.settings)
    for i in range(5):
        resp = httpx.post(f"{live.edge}/v1/events", json=turn(f"obs-{i}"), headers=headers, timeout=10)
        assert resp.status_code == 202, resp.text
    group = live.settings.topic_prefix + "ledgerflow-worker"
    deadline = time.monotonic() + 90
    worker = ""
    while time.monotonic() < deadline:
        assert live.worker_proc.popen.poll() is None, live.worker_proc.log_tail()
        try:
            worker = httpx.get(f"{live.worker}/metrics", timeout=5).text
        except httpx.HTTPError:
            worker = ""
        if any(t.endswith("conversation.events") for t, _, _ in _lag_rows(worker, group)):
            break
        time.sleep(1)
    else:
        pytest.fail(
            f"no consumer lag for {group} within 90 s:\n{worker[-2000:]}\n{live.worker_proc.log_tail()}"
        )
    return httpx.get(f"{live.edge}/metrics", timeout=10).text, worker


def test_worker_and_edge_expose_disjoint_prefixed_metric_sets(scraped: tuple[str, str]) -> None:
    edge, worker = (set(families(text)) for text in scraped)
    for name in edge | worker:
        assert name.startswith("ledgerflow_") or name.startswith(RUNTIME), name
    edge_own = {n for n in edge if n.startswith("ledgerflow_")}
    worker_own = {n for n in worker if n.startswith("ledgerflow_")}
    assert edge_own & worker_own == SHARED
    assert {
        "ledgerflow_http_requests_total",
        "ledgerflow_sse_subscribers",
        "ledgerflow_sse_frames_total",
    } <= edge
    assert {"ledgerflow_policy_decisions_total", "ledgerflow_dead_letters_total"} <= worker
    assert {"ledgerflow_consumer_lag_records", "ledgerflow_policy_decision_duration_seconds"} <= worker
    assert {n for n in edge | worker if n.startswith(RUNTIME)} >= {
        "process_resident_memory_bytes",
        "python_info",
    }
    assert {n for n in edge if n.startswith(RUNTIME)} == {n for n in worker if n.startswith(RUNTIME)}


def test_names_follow_the_prometheus_conventions(scraped: tuple[str, str]) -> None:
    for text in scraped:
        for name, kind in families(text).items():
            if kind == "counter":
                assert name.endswith("_total"), name
            else:
                assert not name.endswith("_total"), name
            if kind == "histogram":
                assert name.endswith(("_seconds", "_bytes")), name
            if "duration" in name or "latency" in name:
                assert name.endswith("_seconds"), name


def test_build_info_names_the_version_and_the_process(scraped: tuple[str, str]) -> None:
    for text, process in zip(scraped, ("edge", "worker"), strict=True):
        (info,) = (f for f in text_string_to_metric_families(text) if f.name == "ledgerflow_build_info")
        (sample,) = info.samples
        assert sample.value == 1
        assert sample.labels["process"] == process
        assert sample.labels["version"] == ledgerflow.__version__
        assert re.fullmatch(r"3\.\d+\.\d+", sample.labels["python"])


def test_the_worker_reports_its_groups_lag_for_every_partition_it_owns(
    live: Live, scraped: tuple[str, str]
) -> None:
    group = live.settings.topic_prefix + "ledgerflow-worker"
    rows = _lag_rows(scraped[1], group)
    events = live.settings.topic("conversation.events")
    counts = asyncio.run(partition_counts(live.settings, [events]))
    # one worker owns every partition; each committed one has a row, and no other group's rows leak in
    got = {int(p) for t, p, _ in rows if t == events}  # rows of the hot path's group only
    assert got and got <= set(range(counts[events]))
    assert all(t.startswith(live.settings.topic_prefix) and v >= 0 for t, _, v in rows)
    others = [
        f for f in text_string_to_metric_families(scraped[1]) if f.name == "ledgerflow_consumer_lag_records"
    ]
    # the hot path's group reads the events; the faust App's (training, usage) is "<group>-aux"
    assert group in {s.labels["group"] for f in others for s in f.samples}
    assert {s.labels["group"] for f in others for s in f.samples} <= {group, group + "-aux"}


def test_every_metric_the_dashboard_queries_is_exposed(scraped: tuple[str, str]) -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 20
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique for Grafana"
    queried = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    missing = queried - queryable(scraped[0]) - queryable(scraped[1]) - AWAITED
    assert not missing, f"the dashboard queries metrics no process exports: {sorted(missing)}"
    job_query = dashboard["templating"]["list"][1]["query"]["query"]
    assert METRIC_NAME.findall(job_query) == ["ledgerflow_build_info"]


def test_the_alert_rules_pass_promtool_and_query_only_exposed_metrics(scraped: tuple[str, str]) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: install Debian's `prometheus` package (scripts/bootstrap.sh does)"
    for command in (
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
        ["check", "config", "prometheus.yml"],
    ):
        done = subprocess.run([promtool, *command], cwd=DEPLOY, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    rules = (DEPLOY / "alerts.yml").read_text()
    exprs = re.findall(r"expr: (\|\n(?:\s{10,}.*\n)+|.*)", rules)
    assert len(exprs) == rules.count("- alert:") >= 6
    queried = {name for expr in exprs for name in METRIC_NAME.findall(expr)}
    missing = queried - queryable(scraped[0]) - queryable(scraped[1]) - AWAITED
    assert not missing, f"alert rules query metrics no process exports: {sorted(missing)}"


def test_the_docs_list_exactly_the_exported_families(scraped: tuple[str, str]) -> None:
    edge, worker = (set(families(text)) for text in scraped)
    exported = {
        n: ("both" if n in edge and n in worker else "edge" if n in edge else "worker") for n in edge | worker
    }
    exported = {n: where for n, where in exported.items() if n.startswith("ledgerflow_")}
    rows = re.findall(r"^\| `(ledgerflow_[a-z0-9_]+)` \| (\w+) \| (\w+) \|", DOC.read_text(), re.M)
    assert len({name for name, _, _ in rows}) == len(rows), "a family is listed twice"
    rows = [row for row in rows if row[0] in exported or row[0] not in AWAITED]
    documented = {name: where for name, _, where in rows}
    assert documented == exported
    kinds = families(scraped[0]) | families(scraped[1])
    assert {name: kind for name, kind, _ in rows} == {n: kinds[n] for n in exported}


def _json_lines(log: Path) -> list[dict[str, object]]:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line in {log.name}: {line!r}")
        assert isinstance(value, dict) and {"time", "level", "logger", "message"} <= value.keys(), line
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", str(value["time"])), line
        parsed.append(value)
    return parsed


def test_json_logs_have_one_object_per_line(live: Live, scraped: tuple[str, str]) -> None:
    # A request uvicorn cannot parse: its own warning must come out as JSON too.
    host, port = live.edge.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        raw.recv(1024)
    time.sleep(0.5)
    edge = _json_lines(live.edge_proc.log)
    assert any(str(line["logger"]).startswith("uvicorn") for line in edge), edge
    worker = _json_lines(live.worker_proc.log)
    assert any(str(line["logger"]).startswith("ledgerflow.agents") for line in worker), worker[:5]


@pytest.mark.parametrize("command", ["worker", "serve", "demo"])
def test_an_unknown_log_format_stops_the_command_with_one_line(stack: Settings, command: str) -> None:
    env = {**os.environ, "LEDGERFLOW_LOG_FORMAT": "yaml", "LEDGERFLOW_STATE_DIR": str(stack.state_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "ledgerflow.cli", command], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "ledgerflow: LEDGERFLOW_LOG_FORMAT='yaml' is not a log format; use 'text' or 'json'"
    ]
    flag = subprocess.run(
        [sys.executable, "-m", "ledgerflow.cli", command, "--log-format", "yaml"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert flag.returncode == 2 and "invalid choice: 'yaml'" in flag.stderr


def test_the_demo_names_both_metrics_endpoints_and_its_children_log_json(
    stack: Settings, tmp_path: Path
) -> None:
    http, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    settings = stack.with_overrides(
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.", http=http, state_dir=tmp_path / "state"
    )
    env = child_env(settings) | {"LEDGERFLOW_WORKER_METRICS": metrics, "PYTHONUNBUFFERED": "1"}
    env.pop("LEDGERFLOW_LOG_FORMAT", None)
    done = subprocess.run(
        [sys.executable, "-m", "ledgerflow.cli", "demo", "--duration", "3", "--log-format", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert f"metrics http://{http}/metrics" in done.stdout
    assert f"worker:    metrics http://{metrics}/metrics" in done.stdout
    logs = settings.state_dir / "logs"
    worker = _json_lines(logs / "worker.log")
    assert any(str(line["logger"]).startswith("ledgerflow.agents") for line in worker)
    _json_lines(logs / "edge.log")
