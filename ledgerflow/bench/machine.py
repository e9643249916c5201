"""What the numbers were measured on: the machine, the versions, the load around them."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import redis

from ledgerflow.config import Settings
from ledgerflow.redisclient import sync_client

PACKAGES = (
    "faust-streaming",
    "aiokafka",
    "redis",
    "fastavro",
    "avro",
    "orjson",
    "starlette",
    "uvicorn",
    "matplotlib",
    "py-spy",
    "mypy",  # mypyc, which compiles the hot path (make native)
)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def load_average() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _redis_server(url: str) -> str | None:
    try:
        client = sync_client(url, socket_timeout=5)
        try:
            return str(client.info("server").get("redis_version"))
        finally:
            client.close()
    except redis.RedisError:
        return None


def _compiled_core() -> str:
    """Whether this process runs the mypyc-compiled hot path (ledgerflow/native.py), and if not, why."""
    from ledgerflow import native

    choice = native.choose()
    return f"{len(native.MODULES)} modules" if choice.compiled else f"no ({choice.reason})"


def describe(settings: Settings) -> dict[str, Any]:
    """Machine, OS, Python, broker/Redis/package versions and endpoints."""
    from ledgerflow.contracts.codec import fast_codec_loaded
    from ledgerflow.stack.kafka import KAFKA_VERSION

    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(_memory_gib(), 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "kafka": KAFKA_VERSION,
        "redis_server": _redis_server(settings.redis_url),
        "packages": {name: _version(name) for name in PACKAGES},
        "fastavro_c": fast_codec_loaded(),
        "compiled_core": _compiled_core(),
        "kafka_bootstrap": settings.kafka_bootstrap,
        "redis_url": settings.redis_url,
        "load_average_at_start": load_average(),
    }
