"""Benchmarks: ``ledgerflow bench`` (``run.bench_cli``) measures the whole system against the
raw limits of the same broker, Redis and client, in one run; results go to
``bench/results/`` and docs/benchmarks.md. Micro-benchmarks: ``python -m ledgerflow.bench.codec``.

Modules: ``run`` (the sequence), ``trials`` / ``sse_trial`` (one measurement each),
``figures`` / ``stats`` (pure arithmetic), ``report`` / ``charts`` (outputs), and the
processes a run starts: ``load``, ``passthrough``, ``counted_worker``, ``naive_agent``,
``replay``, ``sse_clients``.
"""
