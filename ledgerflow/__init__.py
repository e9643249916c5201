"""ledgerflow: an event-sourced stream-processing backbone for governed AI conversations."""

from __future__ import annotations

from ledgerflow import native

__version__ = "0.1.0"

# Before any hot-path module is imported: the compiled core if it is built and current, else the sources.
native.choose()
