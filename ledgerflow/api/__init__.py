"""The HTTP edge (Starlette on uvicorn): ingest, step, queries, SSE; ``app.create_app`` builds it."""

__all__ = ["app", "server", "spec"]  # create_app, the uvicorn entry, the OpenAPI builder
