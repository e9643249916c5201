"""Micro-benchmarks (``python -m ledgerflow.bench.<name>``); results go to docs/benchmarks.md."""
