"""``ledgerflow serve``: the edge on uvicorn."""

from __future__ import annotations

import uvicorn

from ledgerflow.api.app import create_app
from ledgerflow.config import Settings


def serve(settings: Settings) -> int:
    app = create_app(settings)
    uvicorn.run(
        app, host=settings.http_host, port=settings.http_port, log_level="warning",
        timeout_graceful_shutdown=5, access_log=False,
    )
    return 0
