"""``GET /docs``: the API reference page (Swagger UI over the live ``/openapi.json``).

The page and Swagger UI's assets are built with the console (``make console`` copies them
from the npm package swagger-ui-dist into ``console/dist/api-docs/``), and the edge serves
them: nothing comes from a CDN. Like the console, the page needs no token; the operations it
calls with "Try it out" do (its Authorize button takes a bearer token).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from ledgerflow.api.console import console_dir, report_unbuilt
from ledgerflow.api.problems import PROBLEM_JSON, problem_for
from ledgerflow.api.spec import PUBLIC, operation, ref

PATH = "/docs"
PUBLIC_PATHS = frozenset({PATH})


@operation(
    "getApiDocs",
    summary="The API reference page (Swagger UI, served by the edge)",
    tags=["operations"],
    security=PUBLIC,
    responses={
        "200": {"description": "The page", "content": {"text/html": {"schema": {"type": "string"}}}},
        "404": {
            "description": "The console (which builds the page) is not built: run `make console`",
            "content": {PROBLEM_JSON: {"schema": ref("Problem")}},
        },
    },
)
async def api_docs(request: Request) -> Response:
    page = console_dir() / "api-docs" / "index.html"
    if not page.is_file():
        report_unbuilt(page)  # the path goes to the log, not to an unauthenticated answer
        return problem_for(
            HTTPException(404, "the API reference is not built: run `make console` (it builds the page)")
        )
    return FileResponse(page, media_type="text/html; charset=utf-8")
