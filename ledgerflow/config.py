"""Settings from the environment (the CLI takes the same values as flags)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from ledgerflow.digits import ascii_digits

DEFAULT_KAFKA_PORT = 19092
DEFAULT_CONTROLLER_PORT = 19093
DEFAULT_REDIS_PORT = 16379
DEFAULT_KAFKA = f"127.0.0.1:{DEFAULT_KAFKA_PORT}"
DEFAULT_REDIS = f"redis://127.0.0.1:{DEFAULT_REDIS_PORT}/0"
DEFAULT_HTTP = "127.0.0.1:8700"


@dataclass(frozen=True, slots=True)
class Settings:
    """Where ledgerflow finds its services and keeps its state.

    ``kafka_external`` / ``redis_external`` are true when the user pointed us at
    services that already run: then ``stack up`` starts nothing for them.
    """

    kafka_bootstrap: str = DEFAULT_KAFKA
    redis_url: str = DEFAULT_REDIS
    http: str = DEFAULT_HTTP
    state_dir: Path = field(default_factory=lambda: Path(".ledgerflow").resolve())
    jwks: str = ""
    policy_trust: str = ""
    topic_prefix: str = ""
    kafka_external: bool = False
    redis_external: bool = False
    issuer: str = "ledgerflow-dev"
    audience: str = "ledgerflow"

    @property
    def jwks_location(self) -> str:
        return self.jwks or str(self.state_dir / "jwks.json")

    @property
    def policy_trust_location(self) -> str:
        """The rule-pack publisher keys (JWKS file or URL): ``LEDGERFLOW_POLICY_TRUST``, else the dev ones."""
        return self.policy_trust or str(self.state_dir / "policy" / "jwks.json")

    @property
    def http_host(self) -> str:
        return self.http.rsplit(":", 1)[0]

    @property
    def http_port(self) -> int:
        return int(self.http.rsplit(":", 1)[1])

    def topic(self, base: str) -> str:
        """The full topic name for a base name such as ``conversation.events``."""
        return f"{self.topic_prefix}{base}"

    def with_overrides(self, **changes: object) -> Settings:
        real = {k: v for k, v in changes.items() if v is not None}
        return replace(self, **real)  # type: ignore[arg-type]


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment with ``settings`` spelled out: a ``ledgerflow`` child started
    with it connects where this process does, whatever flags set that."""
    env = dict(os.environ)
    env.update(
        LEDGERFLOW_KAFKA_BOOTSTRAP=settings.kafka_bootstrap,
        LEDGERFLOW_REDIS_URL=settings.redis_url,
        LEDGERFLOW_HTTP=settings.http,
        LEDGERFLOW_STATE_DIR=str(settings.state_dir),
        LEDGERFLOW_TOPIC_PREFIX=settings.topic_prefix,
        LEDGERFLOW_JWKS=settings.jwks_location,
        LEDGERFLOW_POLICY_TRUST=settings.policy_trust_location,
    )
    return env


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read ``LEDGERFLOW_*`` variables; unset ones take the local-stack defaults."""
    env = os.environ if env is None else env
    state_dir = Path(env.get("LEDGERFLOW_STATE_DIR", ".ledgerflow")).expanduser().resolve()
    kafka = env.get("LEDGERFLOW_KAFKA_BOOTSTRAP", "")
    redis = env.get("LEDGERFLOW_REDIS_URL", "")
    # Ports of the local stack that `stack up` manages (the controller takes Kafka's port + 1).
    kafka_port = _port(env, "LEDGERFLOW_KAFKA_PORT", DEFAULT_KAFKA_PORT)
    redis_port = _port(env, "LEDGERFLOW_REDIS_PORT", DEFAULT_REDIS_PORT)
    metrics_address(env.get("LEDGERFLOW_WORKER_METRICS", ""), "LEDGERFLOW_WORKER_METRICS")  # refused up front
    # A state dir holding a local Redis Cluster (`stack up --redis-cluster`) is reached with the
    # cluster client (ledgerflow/redisclient.py).
    scheme = "redis+cluster" if (state_dir / "redis-1").is_dir() else "redis"
    return Settings(
        kafka_bootstrap=kafka or f"127.0.0.1:{kafka_port}",
        redis_url=redis or f"{scheme}://127.0.0.1:{redis_port}/0",
        http=host_port(env.get("LEDGERFLOW_HTTP", "") or DEFAULT_HTTP, "LEDGERFLOW_HTTP"),
        state_dir=state_dir,
        jwks=env.get("LEDGERFLOW_JWKS", ""),
        policy_trust=env.get("LEDGERFLOW_POLICY_TRUST", ""),
        topic_prefix=env.get("LEDGERFLOW_TOPIC_PREFIX", ""),
        # Set explicitly = the user runs that service: `stack up` starts nothing for it.
        kafka_external=bool(kafka),
        redis_external=bool(redis),
    )


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    """A port variable; ValueError naming it (the CLI reports it as a configuration error)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not ascii_digits(raw) or not 0 < int(raw) < 65536:
        raise ValueError(f"{name}={raw!r} is not a port number (1-65535); unset it or give e.g. {default}")
    return int(raw)


def metrics_address(value: str, name: str) -> str | None:
    """A metrics address: HOST:PORT (port 1-65535), or None for '', 'off', 'none' (not served);
    ValueError naming ``name`` for anything else."""
    address = value.strip()
    if address.lower() in {"", "off", "none"}:
        return None
    host, _, port = address.rpartition(":")
    if not host or not ascii_digits(port) or not 0 < int(port) < 65536:
        raise ValueError(f"{name}={value!r} is not HOST:PORT (port 1-65535) or off; e.g. 127.0.0.1:8701")
    return address


def host_port(value: str, name: str) -> str:
    """``HOST:PORT`` as given; ValueError naming ``name`` (a variable or a flag) when it is not one."""
    host, _, port = value.strip().rpartition(":")
    if not host or not ascii_digits(port) or not 0 <= int(port) < 65536:  # 0: any free port
        raise ValueError(f"{name}={value!r} is not HOST:PORT (e.g. {DEFAULT_HTTP})")
    return value.strip()
