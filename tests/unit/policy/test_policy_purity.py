"""The policy core is pure: no Kafka, Redis or HTTP library, no clock, randomness or I/O."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "ledgerflow" / "policy"

# Roots of modules that would make the core impure (brokers, stores, HTTP, clock, randomness).
FORBIDDEN_ROOTS = {
    "aiokafka", "kafka", "confluent_kafka", "faust", "mode",
    "redis", "aioredis",
    "http", "httpx", "requests", "urllib3", "aiohttp", "starlette", "uvicorn", "socket",
    "time", "datetime", "random", "secrets", "uuid", "os", "subprocess", "asyncio",
}  # fmt: skip
ALLOWED_ROOTS = {
    "__future__", "bisect", "collections", "copy", "dataclasses", "enum", "functools", "hashlib",
    "importlib", "json", "math", "re", "string", "types", "typing",
    "rfc8785", "jsonschema", "yaml", "re2", "ledgerflow",
}  # fmt: skip


def imported_names(module: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.append(node.module or "")
    return names


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_policy_module_imports_only_pure_dependencies(module: Path) -> None:
    for name in imported_names(module):
        root = name.split(".")[0]
        assert root in ALLOWED_ROOTS, f"{module.name} imports {name}: the policy core must stay pure"
        if root == "ledgerflow":
            assert name == "ledgerflow.errors" or name.startswith("ledgerflow.policy"), (
                f"{module.name} imports {name}: the policy core may only use ledgerflow.errors"
            )


def test_policy_at_runtime_loads_no_broker_store_or_http_library() -> None:
    script = (
        "import json, sys\n"
        "from ledgerflow.policy import TrainingState, Turn, evaluate, parse_rule_pack\n"
        "pack = parse_rule_pack(open(sys.argv[1], encoding='utf-8').read())\n"
        "evaluate(Turn('e', 'acme', 'c', 'user', 'a@example.com'), pack, TrainingState(False, 1))\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(ROOT / "examples" / "rulepacks" / "default.json")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT)},
        check=True,
        timeout=60,
    )
    loaded = {name.split(".")[0] for name in json.loads(result.stdout)}
    brokers_and_http = {
        "aiokafka", "kafka", "confluent_kafka", "faust", "redis", "aioredis",
        "httpx", "requests", "urllib3", "aiohttp", "starlette", "uvicorn",
    }  # fmt: skip
    assert not loaded & brokers_and_http
    assert "http" not in loaded, "http.client came in: something imports an HTTP stack"
