"""The HTTP edge (Starlette on uvicorn): ingest, step, queries, SSE; ``app.create_app`` builds it."""
