"""The identity audit trail: ``identity.audit``, hash-chained per writer (docs/auth.md).

Pure: ``records`` (key changes and mints as records), ``refusals`` (bounded per-window
counts of refused authentications). I/O: ``trail`` (append to the chain, read its head),
``edge`` (an edge's periodic flush), ``cli`` (``keys rotate``, ``token``, ``stack up``).
"""
