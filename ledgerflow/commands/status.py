"""``stack status`` also sees an edge and a worker started by hand: not by pid file (only
``demo`` writes those) but by what answers on their addresses — the edge's ``/healthz`` on
``LEDGERFLOW_HTTP`` and a worker's Prometheus metrics on ``LEDGERFLOW_WORKER_METRICS``."""

from __future__ import annotations

import os
from typing import Any

import httpx

from ledgerflow.config import Settings
from ledgerflow.metrics import worker_metrics_address

PROBE_TIMEOUT_S = 1.0
WORKER_MARKER = "ledgerflow_"  # a metric name only ledgerflow's registries have


def probe(settings: Settings, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What answers where: ``{"edge": url or None, "worker_metrics": url or None}``."""
    env = dict(os.environ) if env is None else env
    edge = f"http://{settings.http}"
    metrics = worker_metrics_address(env)
    worker = None if metrics is None else f"http://{metrics}/metrics"
    return {
        "edge": edge if _answers(edge + "/healthz", None) else None,
        "worker_metrics": worker if worker and _answers(worker, WORKER_MARKER) else None,
    }


def _answers(url: str, marker: str | None) -> bool:
    try:
        resp = httpx.get(url, timeout=PROBE_TIMEOUT_S)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200 and (marker is None or marker in resp.text)


def running(pid: int | None, managed: bool, found: str | None = None) -> str:
    """The status column: a pid (started by ``stack up``/``demo``), or what answers, or neither."""
    if pid:
        return f"pid {pid}"
    if found:
        return f"running (started by hand; answers at {found})"
    return "not running" if managed else "external"
