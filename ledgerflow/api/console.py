"""The admin console's static files: the built single-page app at ``/console/``, ``/`` → 307 there.

The SPA is built by ``make console`` into ``console/dist`` at the repository root
(``LEDGERFLOW_CONSOLE_DIR`` overrides the directory). Static files need no token; every
API the console calls stays protected. A path under ``/console/`` that is no file and has
no file extension is a client route of the SPA and gets ``index.html``. While the
directory is missing, ``/console/`` answers a 404 problem saying how to build it; the
directory is looked up per request, so building it while the edge runs is enough.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path, PurePosixPath

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from ledgerflow.api.problems import problem_for

MOUNT = "/console"
PUBLIC_PATHS = frozenset({"/", MOUNT})
"""Paths that need no token (with everything under ``MOUNT + "/"``)."""
REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
NOT_BUILT = "the console is not built: run `make console` (the edge's log names the directory it looked in)"
"""The 404 detail: no server path in an answer anyone may ask for without a token."""

log = logging.getLogger(__name__)
_reported: set[Path] = set()


def report_unbuilt(missing: Path) -> None:
    """Log, once per path, the file whose absence makes the console (or /docs) a 404: the
    operator's clue, kept out of the unauthenticated answer."""
    if missing not in _reported:
        _reported.add(missing)
        log.warning(
            "console not built: %s is missing; run `make console` or set LEDGERFLOW_CONSOLE_DIR", missing
        )


def console_dir() -> Path:
    """Where the built console is: ``LEDGERFLOW_CONSOLE_DIR``, else ``<repository>/console/dist``."""
    override = os.environ.get("LEDGERFLOW_CONSOLE_DIR")
    return Path(override) if override else REPOSITORY_ROOT / "console" / "dist"


def is_client_route(path: str) -> bool:
    """A path the SPA's router handles (no file extension in its last segment)."""
    return "." not in PurePosixPath(path).name


class SpaFiles(StaticFiles):
    """``StaticFiles(html=True)`` whose misses on client routes fall back to ``index.html``."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        try:
            return await super().get_response(path, scope)
        except HTTPException as exc:
            if exc.status_code != 404 or not is_client_route(path):
                raise
            return await super().get_response("index.html", scope)


class ConsoleFiles:
    """The ASGI app mounted at ``/console``: the SPA when built, else a 404 problem saying how."""

    def __init__(self, directory: Path | None = None) -> None:
        self._fixed = directory
        self._files: SpaFiles | None = None
        self._serving: Path | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        directory = self._fixed or console_dir()
        if not (directory / "index.html").is_file():
            report_unbuilt(directory / "index.html")
            await problem_for(HTTPException(404, NOT_BUILT))(scope, receive, send)
            return
        if self._files is None or self._serving != directory:
            self._files, self._serving = SpaFiles(directory=directory, html=True), directory
        try:
            await self._files(scope, receive, send)
        except HTTPException as exc:
            await problem_for(exc)(scope, receive, send)


async def to_console(request: Request) -> RedirectResponse:
    """``GET /`` and ``GET /console``: 307 to the console (relative: never the client's Host)."""
    return RedirectResponse(f"{MOUNT}/", status_code=307)
