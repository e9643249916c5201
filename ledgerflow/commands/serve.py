"""``ledgerflow serve``: check what the edge needs, then run it and say where it listens."""

from __future__ import annotations

import asyncio
import os

from ledgerflow.commands.announce import announce
from ledgerflow.commands.preflight import require_noeviction, require_redis, require_topics
from ledgerflow.commands.quiet import unhush_clients
from ledgerflow.config import Settings
from ledgerflow.errors import InfrastructureError
from ledgerflow.stack.processes import port_in_use


def serve_cli(settings: Settings) -> int:
    from ledgerflow.api.app import check_environment
    from ledgerflow.api.server import SseKnobs, serve

    SseKnobs.from_env()
    check_environment(os.environ)  # a bad variable is one line before any connection attempt
    if port_in_use(settings.http_host, settings.http_port):
        raise InfrastructureError(
            f"{settings.http} is taken (another edge?): stop that process, or listen elsewhere with "
            "--http HOST:PORT / LEDGERFLOW_HTTP"
        )
    require_redis(settings)
    warning = require_noeviction(settings)  # an evicting Redis loses data silently: refused here
    if warning is not None:
        announce(f"warning: {warning}")
    asyncio.run(require_topics(settings))
    unhush_clients()
    return serve(settings, on_ready=lambda: announce(listening(settings)))


def listening(settings: Settings) -> str:
    base = f"http://{settings.http}"
    return f"edge listening on {base} (console {base}/console/, metrics {base}/metrics); Ctrl-C stops it"
