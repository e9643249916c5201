"""The Docker route (docker-compose.yml, Dockerfile, .dockerignore, docs/docker.md) agrees with the code.

These are static checks only. They parse the files and compare them with ledgerflow
itself (``load_settings``, the CLI parser, ``KAFKA_VERSION``, the topic list). No Docker
engine is needed or used: nothing here builds the image or starts a container, so a
mistake only an engine would see (an image tag that does not exist, a broker setting
Kafka rejects) is not caught here. The route CI runs end to end is the native one
(``make demo`` / ``make test``).
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import inspect
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from ledgerflow.cli import build_parser
from ledgerflow.config import Settings, load_settings
from ledgerflow.stack.kafka import KAFKA_VERSION

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DOC = ROOT / "docs" / "docker.md"
CONSTRAINTS = ROOT / "constraints.txt"

LEDGERFLOW_SERVICES = ("keys", "worker", "edge", "traffic")
EXPECTED_SUBCOMMAND = {"keys": "token", "worker": "worker", "edge": "serve", "traffic": "produce"}
VARIABLE = re.compile(r"LEDGERFLOW_[A-Z][A-Z0-9_]*")


# -- helpers ------------------------------------------------------------------------------
def interpolate(value: object) -> str:
    """Compose interpolation with an empty host environment: ``${X:-d}`` -> d, ``$$`` -> ``$``."""
    text = str(value).replace("$$", "\0")
    text = re.sub(r"\$\{(\w+)(?::?[-?]([^}]*))?\}", lambda m: m.group(2) or "", text)
    text = re.sub(r"\$(\w+)", "", text)
    return text.replace("\0", "$")


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): interpolate(v) for k, v in env.items()}


def settings_of(service: dict[str, Any]) -> Settings:
    return load_settings(environment(service))


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):  # short form means service_started
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def argv_of(service: dict[str, Any]) -> list[str]:
    """The ``ledgerflow`` arguments a service runs (through the image's entrypoint or ``sh -c``)."""
    command = service.get("command") or []
    command = shlex.split(command) if isinstance(command, str) else [str(c) for c in command]
    entrypoint = service.get("entrypoint")
    if entrypoint is None:
        return command
    script = interpolate(" ".join(command))
    words = shlex.split(script, posix=True)
    start = words.index("ledgerflow") + 1
    end = next((i for i in range(start, len(words)) if words[i] in {">", "&&", ";", "|", "||"}), len(words))
    return words[start:end]


def parse_cli(argv: list[str], where: str) -> Any:
    try:
        return build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where}: `ledgerflow {' '.join(argv)}` is not a valid ledgerflow command line")


def python_snippet(healthcheck: dict[str, Any]) -> str | None:
    test = healthcheck.get("test") or []
    if isinstance(test, list) and "-c" in test and any(str(t).endswith("python") for t in test):
        return str(test[test.index("-c") + 1])
    return None


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    current = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        op, _, rest = current.partition(" ")
        out.append((op.upper(), rest.strip()))
        current = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    steps = dockerfile_instructions()
    last_from = max(i for i, (op, _) in enumerate(steps) if op == "FROM")
    return steps[last_from:]


def shell_blocks(doc: Path) -> list[str]:
    return re.findall(r"```(?:bash|sh|shell)\n(.*?)```", doc.read_text(encoding="utf-8"), flags=re.DOTALL)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


# -- compose: shape and configuration -----------------------------------------------------
def test_compose_uses_the_compose_spec_without_a_version_key(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the Compose spec has no `version:` key (docker compose warns on it)"
    assert set(compose["services"]) == {"kafka", "redis", *LEDGERFLOW_SERVICES}


def test_every_ledgerflow_variable_in_the_docker_files_is_read_by_load_settings() -> None:
    known = set(re.findall(r'"(LEDGERFLOW_[A-Z0-9_]+)"', inspect.getsource(load_settings)))
    assert known, "found no LEDGERFLOW_* names in load_settings: has config.py changed shape?"
    for path in (COMPOSE, DOCKERFILE, DOC):
        unknown = set(VARIABLE.findall(path.read_text(encoding="utf-8"))) - known
        assert not unknown, f"{path.name} sets {sorted(unknown)}, which load_settings never reads"


def test_ledgerflow_services_all_take_the_shared_env_block(compose: dict[str, Any], services: dict) -> None:
    shared = {k: interpolate(v) for k, v in compose["x-ledgerflow-env"].items()}
    assert {"LEDGERFLOW_KAFKA_BOOTSTRAP", "LEDGERFLOW_REDIS_URL", "LEDGERFLOW_STATE_DIR"} <= set(shared)
    for name in LEDGERFLOW_SERVICES:
        env = environment(services[name])
        differing = {k for k, v in shared.items() if env.get(k) != v}
        assert not differing, f"service {name} does not take {sorted(differing)} from x-ledgerflow-env"


def test_ledgerflow_reaches_kafka_and_redis_by_their_service_names(services: dict) -> None:
    settings = settings_of(services["worker"])
    advertised = environment(services["kafka"])["KAFKA_ADVERTISED_LISTENERS"]
    assert f"PLAINTEXT://{settings.kafka_bootstrap}" in advertised.split(","), (
        f"LEDGERFLOW_KAFKA_BOOTSTRAP={settings.kafka_bootstrap} is not an advertised listener: {advertised}"
    )
    host = re.match(r"redis://([^:/]+)", settings.redis_url)
    assert host and host.group(1) in services, f"LEDGERFLOW_REDIS_URL={settings.redis_url} names no service"


def test_kafka_image_tag_is_the_version_ledgerflow_pins(services: dict) -> None:
    image = services["kafka"]["image"]
    repository, _, tag = image.partition(":")
    assert repository == "apache/kafka"
    assert tag == KAFKA_VERSION, f"compose runs Kafka {tag}, the native stack {KAFKA_VERSION}"


def test_kafka_is_a_single_kraft_node_that_auto_creates_no_topic(services: dict) -> None:
    env = environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(env["KAFKA_NODE_ID"] + "@")
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics come from ensure_topics only"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", f"{key} must be 1 on a single node"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    listeners = env["KAFKA_LISTENERS"].split(",")
    assert "PLAINTEXT://:9092" in listeners and "CONTROLLER://:9093" in listeners


def test_redis_keeps_no_persistence(services: dict) -> None:
    command = [str(c) for c in services["redis"]["command"]]
    assert command[command.index("--save") + 1] == "", "redis must not write RDB snapshots"
    assert command[command.index("--appendonly") + 1] == "no"


# -- compose: start order and health ------------------------------------------------------
@pytest.mark.parametrize("name", ["worker", "edge"])
def test_worker_and_edge_wait_for_healthy_kafka_and_redis(services: dict, name: str) -> None:
    deps = depends_on(services[name])
    for needed in ("kafka", "redis"):
        assert deps.get(needed) == "service_healthy", f"{name} must wait until {needed} is healthy"


def test_every_service_healthy_dependency_has_a_healthcheck(services: dict) -> None:
    for name, service in services.items():
        for dep, condition in depends_on(service).items():
            if condition == "service_healthy":
                assert (services[dep].get("healthcheck") or {}).get("test"), (
                    f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck: it waits forever"
                )


@pytest.mark.parametrize("name", ["edge", "worker"])
def test_edge_and_worker_wait_for_keys_and_share_their_state_volume(
    compose: dict[str, Any], services: dict, name: str
) -> None:
    # the edge trusts the token keys; both trust the policy keys (an unsigned pack is refused)
    assert depends_on(services[name]).get("keys") == "service_completed_successfully"
    state_dir = str(settings_of(services[name]).state_dir)
    mounts = {}
    for service in ("keys", name):
        volumes = [str(v).split(":") for v in services[service].get("volumes", [])]
        mounts[service] = {source for source, target, *_ in volumes if target == state_dir}
        assert mounts[service], f"{service} mounts nothing at LEDGERFLOW_STATE_DIR={state_dir}"
    shared = mounts["keys"] & mounts[name]
    assert shared and shared <= set(compose.get("volumes") or {}), (
        f"keys and {name} must share a named volume"
    )


def test_the_keys_service_creates_the_policy_publisher_key(services: dict) -> None:
    command = " ".join(services["keys"]["command"])
    assert "ensure_policy_keys(" in command, (
        "without a policy key every rule pack is refused (no-trust-store)"
    )


def test_edge_listens_on_every_interface_inside_its_container(services: dict) -> None:
    settings = settings_of(services["edge"])
    assert settings.http_host == "0.0.0.0", f"LEDGERFLOW_HTTP={settings.http} is unreachable from outside"
    container_ports = {int(str(p).rsplit(":", 1)[1].split("/")[0]) for p in services["edge"]["ports"]}
    assert settings.http_port in container_ports, f"edge listens on {settings.http_port}: {container_ports}"
    probe = python_snippet(services["edge"]["healthcheck"])
    assert probe and f":{settings.http_port}/healthz" in probe


def test_healthcheck_snippets_compile_and_import_what_exists(services: dict) -> None:
    snippets = {n: python_snippet(s.get("healthcheck") or {}) for n, s in services.items()}
    snippets = {n: s for n, s in snippets.items() if s}
    assert {"worker", "edge"} <= set(snippets)
    for name, snippet in snippets.items():
        tree = ast.parse(snippet, filename=f"{name} healthcheck")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = importlib.import_module(node.module)
                for alias in node.names:
                    assert hasattr(module, alias.name), f"{name} healthcheck imports missing {alias.name}"
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    importlib.import_module(alias.name)


@pytest.mark.parametrize("name", LEDGERFLOW_SERVICES)
def test_service_command_is_a_valid_ledgerflow_command(services: dict, name: str) -> None:
    args = parse_cli(argv_of(services[name]), f"service {name}")
    assert args.command == EXPECTED_SUBCOMMAND[name]


def test_traffic_runs_only_in_the_demo_profile_after_topics_exist(services: dict) -> None:
    assert services["traffic"].get("profiles") == ["demo"]
    others = [n for n, s in services.items() if n != "traffic" and s.get("profiles")]
    assert not others, f"{others} would not start with a plain `docker compose up`"
    args = parse_cli(argv_of(services["traffic"]), "service traffic")
    assert (args.count, args.rate) == (100000, 5.0)
    assert depends_on(services["traffic"]).get("worker") == "service_healthy"


# -- Dockerfile and .dockerignore ---------------------------------------------------------
def test_dockerfile_installs_the_package_with_the_constraints() -> None:
    steps = dockerfile_instructions()
    installs = [i for i, (op, args) in enumerate(steps) if op == "RUN" and "pip install" in args]
    assert installs, "the Dockerfile never runs pip install"
    pip_args = shlex.split(steps[installs[0]][1].split("pip install", 1)[1].split("&&")[0])
    assert "-c" in pip_args and pip_args[pip_args.index("-c") + 1] == "constraints.txt", (
        "install with `pip install -c constraints.txt .` so the image gets the tested versions"
    )
    copied = [i for i, (op, args) in enumerate(steps) if op == "COPY" and "constraints.txt" in args.split()]
    assert copied and copied[0] < installs[0], "constraints.txt must be copied before pip install"


def test_dockerfile_copies_the_schemas_the_package_links_to() -> None:
    link = ROOT / "ledgerflow" / "schemas"
    copies = " ".join(args for op, args in dockerfile_instructions() if op == "COPY")
    if link.is_symlink():
        target = Path(os.path.normpath(link.parent / link.readlink())).relative_to(ROOT)
        assert str(target) in copies, f"ledgerflow/schemas links to {target}/, which the image never gets"
    assert "ledgerflow" in copies


def test_dockerfile_runs_ledgerflow_as_an_unprivileged_user_listening_on_all_interfaces() -> None:
    stage = final_stage()
    assert stage[0][1].split()[0] == "python:3.11-slim"
    users = [args for op, args in stage if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the runtime stage must not run as root"
    assert json.loads(next(a for op, a in stage if op == "ENTRYPOINT")) == ["ledgerflow"]
    assert json.loads(next(a for op, a in stage if op == "CMD")) == ["serve"]
    env = " ".join(args for op, args in stage if op == "ENV")
    http = re.search(r"LEDGERFLOW_HTTP=(\S+)", env)
    assert http and load_settings({"LEDGERFLOW_HTTP": http.group(1)}).http_host == "0.0.0.0"


def test_dockerignore_keeps_keys_and_venvs_out_but_lets_the_sources_in() -> None:
    patterns = [
        p.strip()
        for p in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if p.strip() and not p.startswith("#")
    ]
    for secret in (".ledgerflow", ".venv", ".git"):
        assert any(fnmatch.fnmatch(secret, p) for p in patterns), f".dockerignore lets {secret}/ in"
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "schemas", "ledgerflow"):
        assert not any(fnmatch.fnmatch(needed, p) for p in patterns), f".dockerignore drops {needed}"


def test_constraints_file_does_not_pin_ledgerflow_itself() -> None:
    assert CONSTRAINTS.exists(), (
        "constraints.txt is missing: scripts/bootstrap.sh and the Dockerfile install with it"
    )
    bad = [
        line
        for line in CONSTRAINTS.read_text(encoding="utf-8").splitlines()
        if line.startswith("-e") or re.match(r"ledgerflow\b", line.strip())
    ]
    assert not bad, f"constraints.txt has {bad}: regenerate it with pip freeze --exclude-editable"


# -- docs/docker.md -----------------------------------------------------------------------
def test_docker_doc_commands_name_real_services_and_valid_ledgerflow_commands(services: dict) -> None:
    lines = [line.strip() for block in shell_blocks(DOC) for line in block.splitlines()]
    compose_lines = [line for line in lines if "docker compose" in line]
    assert len(compose_lines) >= 5
    checked = 0
    for line in compose_lines:
        words = shlex.split(re.sub(r"^\w+=\$\((.*)\)$", r"\1", line))
        words = words[words.index("compose") + 1 :]
        while words and words[0] == "--profile":
            profile = words[1]
            assert any(profile in (s.get("profiles") or []) for s in services.values()), profile
            words = words[2:]
        if words[0] not in {"run", "exec"}:
            continue
        verb, rest = words[0], words[1:]
        while rest[0].startswith("-"):
            rest = rest[1:]
        service, argv = rest[0], rest[1:]
        assert service in services, f"docs/docker.md uses service {service!r}, which compose does not define"
        if verb == "exec":
            assert argv[0] == "ledgerflow", f"`{line}`: exec bypasses the entrypoint, start with ledgerflow"
            argv = argv[1:]
        parse_cli(argv, f"docs/docker.md `{line}`")
        checked += 1
    assert checked >= 3


def test_docker_doc_points_to_the_native_route_that_ci_tests() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert "make demo" in text
    assert "docker compose up --build" in text and "docker compose --profile demo up" in text
