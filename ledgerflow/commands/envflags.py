"""Flags for the settings the README lists, on the verbs where each means something.

A flag given on the command line overrides its ``LEDGERFLOW_*`` variable: ``apply`` writes it
into this process's environment before anything reads it, so every reader (``load_settings``,
the edge's limits, the worker's metrics address) sees the same value, and so do the processes
``demo`` starts.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import MutableMapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class EnvFlag:
    flag: str
    variable: str
    metavar: str
    help: str
    verbs: frozenset[str]


_STATE = frozenset(
    # policy: the dev policy key (publish, sign) and the default trust store (verify, list, diff);
    # audit: the default trust store it checks pack signatures against
    {"stack", "worker", "serve", "demo", "token", "keys", "tail", "bench", "policy", "audit"}
)
_EDGE = frozenset({"serve", "demo"})

FLAGS = (
    EnvFlag(
        "--state-dir", "LEDGERFLOW_STATE_DIR", "DIR", "broker/Redis data, logs, pid files, dev keys", _STATE
    ),
    EnvFlag("--jwks", "LEDGERFLOW_JWKS", "PATH|URL", "public keys the edge trusts", _EDGE),
    EnvFlag(
        "--kafka-port",
        "LEDGERFLOW_KAFKA_PORT",
        "PORT",
        "port of the broker `stack up` starts",
        frozenset({"stack", "demo"}),
    ),
    EnvFlag(
        "--redis-port",
        "LEDGERFLOW_REDIS_PORT",
        "PORT",
        "port of the Redis `stack up` starts",
        frozenset({"stack", "demo"}),
    ),
    EnvFlag(
        "--metrics",
        "LEDGERFLOW_WORKER_METRICS",
        "HOST:PORT|off",
        "where the worker serves metrics",
        frozenset({"worker", "demo"}),
    ),
    EnvFlag(
        "--rate-per-tenant", "LEDGERFLOW_RATE_PER_TENANT", "N", "requests/s per tenant at one edge", _EDGE
    ),
    EnvFlag("--rate-burst", "LEDGERFLOW_RATE_BURST", "N", "burst of that rate", _EDGE),
    EnvFlag(
        "--evaluate-rate-per-tenant",
        "LEDGERFLOW_EVALUATE_RATE_PER_TENANT",
        "N",
        "the same for POST /v1/evaluate",
        _EDGE,
    ),
    EnvFlag("--evaluate-burst", "LEDGERFLOW_EVALUATE_BURST", "N", "burst of that rate", _EDGE),
    EnvFlag(
        "--validate-rate-per-tenant",
        "LEDGERFLOW_VALIDATE_RATE_PER_TENANT",
        "N",
        "rule packs/s a tenant may validate (POST /v1/policy/validate)",
        _EDGE,
    ),
    EnvFlag("--validate-burst", "LEDGERFLOW_VALIDATE_BURST", "N", "burst of that rate", _EDGE),
    EnvFlag(
        "--publish-rate-per-tenant",
        "LEDGERFLOW_PUBLISH_RATE_PER_TENANT",
        "N",
        "rule packs/s a tenant may publish (PUT /v1/policy/rules)",
        _EDGE,
    ),
    EnvFlag("--publish-burst", "LEDGERFLOW_PUBLISH_BURST", "N", "burst of that rate", _EDGE),
    EnvFlag(
        "--sse-per-tenant", "LEDGERFLOW_SSE_PER_TENANT", "N", "open SSE streams per tenant at one edge", _EDGE
    ),
    EnvFlag(
        "--max-token-ttl",
        "LEDGERFLOW_MAX_TOKEN_TTL",
        "SECONDS",
        "longest token lifetime accepted/minted",
        _EDGE | {"token"},
    ),
)


def add(p: argparse.ArgumentParser, verb: str) -> None:
    flags = [f for f in FLAGS if verb in f.verbs]
    if not flags:
        return
    g = p.add_argument_group("settings (each overrides its LEDGERFLOW_* variable)")
    for f in flags:
        g.add_argument(f.flag, dest=_dest(f), metavar=f.metavar, help=f"{f.help} ({f.variable})")


def apply(args: argparse.Namespace, env: MutableMapping[str, str] | None = None) -> None:
    target = os.environ if env is None else env
    for f in FLAGS:
        value = getattr(args, _dest(f), None)
        if value is not None:
            target[f.variable] = value


def _dest(f: EnvFlag) -> str:
    return "env_" + f.flag.lstrip("-").replace("-", "_")
